"""The program generator (data/program_generator.py): pure and seeded, valid Python that the
executor runs, every construct family covered, structure that varies; ProgramTask serving
generated programs and proposer problems while its test split stays the hand-written seeds'."""

import ast
import collections
import itertools
import random

import pytest

from jaxrl_reason.data import program_generator as gen
from jaxrl_reason.data.programs import TASK_TYPES, ProgramTask, seed_programs, split_of
from jaxrl_reason.rewards import programs as checks

SEED = 3


@pytest.fixture(scope="module")
def ex(program_executor):
    return program_executor


@pytest.fixture(scope="module")
def generated(ex):
    return gen.generate_seeds(ex, 12, SEED)


def sample(seed: int, n: int) -> list[gen.Candidate]:
    return list(itertools.islice(gen.sample_programs(seed), n))


def test_sampling_is_deterministic_in_the_seed():
    first = sample(0, 40)
    assert first == sample(0, 40)
    assert {c.program for c in first}.isdisjoint({c.program for c in sample(1, 40)})
    assert len({c.program for c in first}) == 40


def test_candidates_are_one_function_that_passes_the_ban_with_matching_inputs():
    for c in sample(5, 200):
        tree = ast.parse(c.program)
        assert len(tree.body) == 1, c.program
        fn = tree.body[0]
        assert isinstance(fn, ast.FunctionDef) and fn.name == "f", c.program
        assert checks.banned_reason(c.program) is None, c.program
        assert len(c.program) <= 320
        assert len(set(c.inputs)) == len(c.inputs) == 6, c.inputs
        assert all(len(checks.parse_input(i)) == len(fn.args.args) for i in c.inputs), c.inputs
        assert c.message.startswith("Takes ")


def families(program: str) -> set[str]:
    """The construct families of `program`, read independently of the generator's own
    bookkeeping."""
    found = set()
    for node in ast.walk(ast.parse(program)):
        if isinstance(node, ast.For):
            found.add("for")
        elif isinstance(node, ast.While):
            found.add("while")
        elif isinstance(node, ast.If | ast.IfExp):
            found.add("conditional")
        elif isinstance(node, ast.Compare):
            found.add("comparison")
        elif isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(
                node.op, ast.FloorDiv | ast.Mod | ast.Sub):
            found.add("arithmetic")
        elif isinstance(node, ast.ListComp):
            found.add("list")
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name in {"upper", "lower", "replace", "join", "split", "strip", "capitalize"}:
                found.add("string")
            if name in {"append", "insert", "sorted", "sum", "max", "min", "sort", "reverse"}:
                found.add("list")
    return found


def test_every_construct_family_appears_and_structure_varies():
    programs = [c.program for c in sample(7, 200)]
    counts = collections.Counter(f for p in programs for f in families(p))
    for family in ("for", "while", "conditional", "comparison", "arithmetic", "string", "list"):
        assert counts[family] >= 10, (family, counts)
    # Not one template with different constants: the shapes of the syntax trees (names and
    # constants dropped) are nearly all distinct.
    shapes = {tuple(type(n).__name__ for n in ast.walk(ast.parse(p))) for p in programs}
    assert len(shapes) >= 180, len(shapes)


def guards(tree: ast.AST) -> dict[int, set[str]]:
    """For each node under the true branch of an `x if g else y`, the divisors `g` makes
    nonzero: `b` for `b != 0`, `len(v)` for a plain `v`."""
    out: dict[int, set[str]] = collections.defaultdict(set)
    for node in ast.walk(tree):
        if not isinstance(node, ast.IfExp):
            continue
        test = node.test
        if isinstance(test, ast.Compare) and isinstance(test.ops[0], ast.NotEq) and \
                ast.unparse(test.comparators[0]) == "0":
            safe = ast.unparse(test.left)
        elif isinstance(test, ast.Name):
            safe = f"len({test.id})"
        else:
            continue
        for inner in ast.walk(node.body):
            out[id(inner)].add(safe)
    return out


def test_every_division_is_guarded():
    for c in sample(11, 200):
        tree = ast.parse(c.program)
        safe = guards(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.BinOp | ast.AugAssign) or not isinstance(
                    node.op, ast.FloorDiv | ast.Mod):
                continue
            divisor = node.value if isinstance(node, ast.AugAssign) else node.right
            text = ast.unparse(divisor)
            literal = isinstance(divisor, ast.Constant) and divisor.value != 0
            abs_plus_one = text.startswith("abs(") and text.endswith(") + 1")
            assert literal or abs_plus_one or text in safe[id(node)], (ast.unparse(node),
                                                                        c.program)


def test_generated_seeds_hold_the_executors_outputs(ex, generated):
    assert len(generated) == 12 and len({s.program for s in generated}) == 12
    for s in generated:
        outputs = [o for _, o in s.io]
        assert len(s.io) == 6 and len(set(outputs)) > 1 and max(map(len, outputs)) <= 40
    rerun = checks.validate_programs(ex, [(s.program, [i for i, _ in s.io])
                                          for s in generated[:4]])
    for s, v in zip(generated[:4], rerun, strict=True):
        assert v.valid and list(v.outputs) == [o for _, o in s.io], s.program
    # A prefix of a larger request, and the same again: deterministic in the seed.
    assert gen.generate_seeds(ex, 3, SEED) == generated[:3]


def test_program_task_serves_generated_programs_and_checks_gold_targets(ex, generated):
    task = ProgramTask(executor=ex, generated=8, propose=0.3, references=1, compact=True)
    assert task.generated_programs(SEED) == generated[:8]
    train = list(itertools.islice(task.problems("train", SEED), 150))
    generated_programs = {s.program for s in generated[:8]}
    assert generated_programs & {p.meta["program"] for p in train}
    kinds = {(p.meta.get("role", "solve"), p.meta["task_type"]) for p in train}
    assert kinds == {(role, t) for role in ("solve", "propose") for t in TASK_TYPES}
    checked = task.check_batch(train, [task.target(p) for p in train])
    wrong = [(p.meta.get("role"), p.meta["task_type"], p.meta["program"])
             for p, c in zip(train, checked, strict=True) if not c.correct]
    assert not wrong
    # The test split is the hand-written seeds' test split, whatever the options.
    test = list(task.problems("test", SEED))
    assert test == list(ProgramTask(executor=ex).problems("test", SEED))
    assert {p.meta["program"] for p in test} <= {s.program for s in seed_programs()
                                                 if split_of(s.program) == "test"}


def test_proposer_problems_and_compact_prompts(ex, generated):
    task = ProgramTask(executor=ex, propose=1.0, references=2, compact=True, max_chars=800)
    train = list(itertools.islice(task.problems("train", 0), 40))
    assert all(p.meta["role"] == "propose" for p in train)
    assert all(len(task.prompt(p)) + len(task.target(p)) <= 800 for p in train)
    unlimited = ProgramTask(executor=ex, propose=1.0, references=2, compact=True)
    assert any(len(unlimited.prompt(p)) + len(unlimited.target(p)) > 800
               for p in itertools.islice(unlimited.problems("train", 0), 40))  # it filters
    deduction = next(p for p in train if p.meta["task_type"] == "deduction")
    prompt = task.prompt(deduction)
    assert prompt.startswith("propose deduction\n<program>") and prompt.count("<program>") == 2
    crash = "<program>\ndef f(a):\n    return a // 0\n</program>\n<input>1</input>"
    verdict = task.check(deduction, crash)
    assert verdict.answer is not None and not verdict.correct  # well formed, not valid
    assert task.check(deduction, "def f(a): return a").answer is None  # malformed
    ok = task.check(deduction, "<program>\ndef f(a):\n    return a * 2\n</program>\n"
                               "<input>3</input>")
    assert ok.correct
    solver = task.make_problem("deduction", generated[0], random.Random(0), 0)
    verbose = ProgramTask(executor=ex)
    assert task.prompt(solver).startswith("deduction\n<program>")
    assert len(task.prompt(solver)) < len(verbose.prompt(solver))
    assert task.target(solver) == verbose.target(solver)
