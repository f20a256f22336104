"""Absolute Zero program triples: seeds, validation of proposals, checks by execution, rewards."""

import itertools
import random

import pytest

from jaxrl_reason.data.programs import (
    PROPOSAL_RULES,
    TASK_TYPES,
    ProgramTask,
    Seed,
    seed_programs,
    split_of,
)
from jaxrl_reason.rewards import programs as checks

REVERSE = seed_programs()[0]  # "Reverses the order of the words in a sentence."


@pytest.fixture(scope="module")
def ex(program_executor):
    return program_executor


@pytest.fixture(scope="module")
def task(ex):
    return ProgramTask(executor=ex)


def one(task, task_type, seed=REVERSE, index=0):
    return task.make_problem(task_type, seed, random.Random(0), index)


def test_every_seed_validates_and_reproduces_its_outputs(ex):
    seeds = seed_programs()
    assert len(seeds) >= 30 and REVERSE.message.startswith("Reverses")
    verdicts = checks.validate_programs(ex, [(s.program, [i for i, _ in s.io]) for s in seeds])
    for s, v in zip(seeds, verdicts, strict=True):
        assert v.valid, (s.message, v.reason)
        assert list(v.outputs) == [o for _, o in s.io], s.message


def test_every_seed_self_checks_under_every_task_type(task):
    problems = [task.make_problem(t, s, random.Random(0), 0 if t != "induction" else None)
                for s in task.seeds for t in TASK_TYPES]
    checked = task.check_batch(problems, [task.target(p) for p in problems])
    failed = [(p.meta["task_type"], p.meta["message"]) for p, c in zip(problems, checked,
                                                                      strict=True)
              if not c.correct]
    assert not failed


def test_splits_are_disjoint_and_streams_deterministic(task):
    train = list(itertools.islice(task.problems("train", 3), 50))
    assert train == list(itertools.islice(task.problems("train", 3), 50))
    test = list(task.problems("test", 0))
    train_programs = {p.meta["program"] for p in train}
    test_programs = {p.meta["program"] for p in test}
    assert test_programs and not train_programs & test_programs
    assert all(split_of(p) == "test" for p in test_programs)
    assert {p.meta["task_type"] for p in train} == set(TASK_TYPES)


def test_prompt_and_target_formats(task):
    p = one(task, "deduction")
    assert p.meta["input"] in task.prompt(p) and "<answer></answer>" in task.prompt(p)
    assert "The correct answer is: x" in task.prompt(p, hint="x")
    assert task.target(p, "because") == f"because\n<answer>{p.answer}</answer>"
    induction = one(task, "induction")
    shown, hidden = induction.meta["shown"], induction.meta["hidden"]
    assert len(shown) + len(hidden) == len(REVERSE.io) and len(shown) >= 1
    assert all(i in induction.question for i, _ in shown)
    assert not any(i in induction.question for i, _ in hidden)
    custom = ProgramTask(executor=task.executor, answer_tags=("[[", "]]"))
    assert custom.target(p) == f"[[{p.answer}]]" and custom.check(p, "[[" + p.answer + "]]").correct


def test_deduction_correct_wrong_and_malformed(task):
    counts = one(task, "deduction", seed_programs()[1], 1)  # "a b a" -> {'a': 2, 'b': 1}
    by_value = task.check(counts, "order differs <answer>{'b': 1, 'a': 2}</answer>")
    assert by_value.correct and by_value.answer == "{'b': 1, 'a': 2}"
    assert not task.check(counts, "<answer>{'a': 1, 'b': 2}</answer>").correct
    malformed = task.check(counts, "{'a': 2, 'b': 1}")
    assert (malformed.answer, malformed.correct) == (None, False)


def test_abduction_accepts_any_input_that_maps_to_the_output(task):
    p = one(task, "abduction")  # f("hello big world") == 'world big hello'
    assert p.meta["output"] == "'world big hello'"
    assert task.check(p, "<answer>'  hello   big world'</answer>").correct  # not the gold one
    wrong = task.check(p, "<answer>'world big hello'</answer>")
    assert wrong.answer is not None and not wrong.correct
    for malformed in ("<answer>__import__('os').system('true')</answer>",
                      "<answer>'a'); import os; print(('x'</answer>", "no tags"):
        assert task.check(p, malformed).answer is None


def test_induction_runs_the_proposed_program_on_the_hidden_pairs(task):
    p = one(task, "induction")
    other_way = "```python\ndef f(s):\n    words = s.split()\n    return ' '.join(words[::-1])\n```"
    assert task.check(p, f"<answer>{other_way}</answer>").correct
    assert not task.check(p, "<answer>def f(s):\n    return s</answer>").correct
    cheating = "import os\ndef f(s):\n    return ' '.join(reversed(s.split()))"
    banned = task.check(p, f"<answer>{cheating}</answer>")
    assert banned.answer is not None and not banned.correct
    assert task.check(p, "<answer>def f(s) return</answer>").answer is None


@pytest.mark.parametrize("program", [
    "import os\ndef f(x):\n    return x",
    "import os.path\ndef f(x):\n    return x",
    "import math, sys as s\ndef f(x):\n    return x",
    "from os import path\ndef f(x):\n    return x",
    "from os.path import join as j\ndef f(x):\n    return x",
    "from multiprocessing.pool import Pool\ndef f(x):\n    return x",
    "def f(x):\n    import random\n    return random.random()",
    "def f(x):\n    if x:\n        import time\n    return x",
    "from . import sibling\ndef f(x):\n    return x",
    "def f(x):\n    return __import__('os').getpid()",
    "def f(x):\n    imp = __import__\n    return imp('subprocess')",
    "def f(x):\n    return eval('1 + 1')",
    "def f(x):\n    exec('y = 1')\n    return x",
    "def f(x):\n    return open('/etc/passwd').read()",
    "def f(x):\n    return compile('1', 's', 'eval')",
    "def f(x):\n    return getattr(x, '__class__')",
    "import operator\ndef f(x):\n    return operator.attrgetter('__class__')(x)",
    "from operator import attrgetter\ndef f(x):\n    return attrgetter('real', 'a.__dict__')(x)",
    "from operator import attrgetter as ag\ndef f(x):\n    return ag('real')(x)",
    "from operator import methodcaller\ndef f(x):\n    return methodcaller('__reduce__')(x)",
    "def f(x):\n    return getattr(x, *['__class__'])",
    "def f(x):\n    return getattr(x, 'real' + '')",
    "def f(x):\n    g = getattr\n    return g(x, 'real')",
    "def f(x):\n    return ().__class__.__bases__[0].__subclasses__()",
    "def f(x):\n    return f.__globals__['__builtins__']",
    "def f(x):\n    return globals()",
    "def f(x):\n    return vars()",
    "def f(x):\n    return id(x)",
    "import importlib\ndef f(x):\n    return importlib.import_module('os')",
    "import builtins\ndef f(x):\n    return builtins.open",
    "import ctypes\ndef f(x):\n    return x",
    "def g(x):\n    return x",  # no f at all
    "def f(x):\n    return (",  # does not parse
])
def test_banned_programs_are_rejected(ex, program):
    assert checks.banned_reason(program) is not None
    [verdict] = checks.validate_programs(ex, [(program, ["1"])])
    assert not verdict.valid


def test_ordinary_programs_are_allowed():
    for program in ("import math\nfrom collections import Counter\n"
                    "def f(xs):\n    return math.prod(Counter(xs).values())",
                    "def f(x):\n    id = 3\n    input = [x]\n    return getattr(x, 'real'), id,"
                    " input",
                    "from operator import attrgetter, itemgetter\n"
                    "def f(x):\n    return attrgetter('real', 'imag')(x), itemgetter(0)([x])",
                    "import itertools as it\ndef f(n):\n    return list(it.islice(it.count(), n))"):
        assert checks.banned_reason(program) is None, program


def test_nondeterministic_programs_are_rejected(ex):
    for program in ("def f(x):\n    return hash(object())",
                    "def f(x):\n    return [object() for _ in range(x)]",  # reprs with addresses
                    "def f(x):\n    return sorted({object(): 1 for _ in range(3)}.values(),"
                    " key=lambda v: v) and list({object() for _ in range(3)})"):
        [verdict] = checks.validate_programs(ex, [(program, ["3"])])
        assert (verdict.valid, verdict.reason) == (False, "nondeterministic"), program
    [ok] = checks.validate_programs(ex, [("def f(x):\n    return sorted({x, 'b', 'a'})",
                                          ["'c'"])])
    assert ok.valid and ok.outputs == ("['a', 'b', 'c']",)


def test_timeouts_crashes_and_bad_inputs_are_rejected(ex):
    proposals = [("def f(x):\n    while True:\n        pass", ["1"]),
                 ("def f(x):\n    return 1 / x", ["0"]),
                 ("def f(x):\n    return 'a' * 10**10", ["1"]),
                 ("def f(x):\n    return x", ["len('abc')"]),
                 ("def f(x):\n    return x", []),
                 ("def f(x):\n    print('chatty')\n    return x + 1", ["1", "2"])]
    verdicts = checks.validate_programs(ex, proposals, timeout_s=0.5)
    assert [v.valid for v in verdicts] == [False] * 5 + [True]
    assert verdicts[-1].outputs == ("2", "3")


def test_proposals_round_trip_into_checkable_problems(task, ex):
    completion = ("<program>\n```python\ndef f(a, b):\n    return [x * b for x in a]\n```\n"
                  "</program>\n<input>[1, 2, 3], 2</input>")
    proposal = task.parse_proposal("deduction", completion)
    assert proposal is not None and proposal.inputs == ("[1, 2, 3], 2",)
    [verdict] = checks.validate_programs(ex, [(proposal.program, proposal.inputs)])
    assert verdict.valid and verdict.outputs == ("[2, 4, 6]",)
    seed = Seed("", proposal.program, tuple(zip(proposal.inputs, verdict.outputs, strict=True)))
    problem = task.make_problem("deduction", seed, random.Random(0))
    assert task.check(problem, "<answer>[2, 4, 6]</answer>").correct
    assert task.parse_proposal("deduction", "<program>def f(): pass</program>") is None
    induction = task.parse_proposal(
        "induction", "<message>doubles</message><input>1</input><input>2</input>", REVERSE)
    assert induction is not None and induction.inputs == ("1", "2")
    assert task.parse_proposal("induction", "<input>1</input><input>2</input>", REVERSE) is None
    prompt = task.proposal_prompt("abduction", seed_programs()[:3])
    assert seed_programs()[2].program in prompt and "<program>" in prompt


def test_solver_and_proposer_rewards():
    assert checks.solver_reward(True) == 1.0 and checks.solver_reward(False) == 0.0
    assert checks.learnability_reward([True, False, False, False]) == 0.75
    assert checks.learnability_reward([True] * 8) == 0.0
    assert checks.learnability_reward([False] * 8) == 0.0
    with pytest.raises(ValueError):
        checks.learnability_reward([])
    assert checks.format_aware_reward(0.75, passable=True, well_formed=True) == 0.75
    assert checks.format_aware_reward(1.0, passable=False, well_formed=True) == -0.5
    assert checks.format_aware_reward(1.0, passable=False, well_formed=False) == -1.0


def test_outputs_compare_by_value():
    assert checks.outputs_equal("{1, 2}", "{2, 1}")
    assert checks.outputs_equal("(1, [2])", " (1, [2]) ")
    assert not checks.outputs_equal("[1, 2]", "[2, 1]")
    assert not checks.outputs_equal("'1'", "1")
    assert checks.outputs_equal("<A x>", "<A x>") and not checks.outputs_equal("<A>", "<B>")
    assert not checks.outputs_equal("[" * 5000 + "]" * 5000, "[]")


def test_proposer_problems_check_their_gold_targets_by_execution(ex):
    task = ProgramTask(executor=ex, propose=1.0, references=2)
    problems = list(itertools.islice(task.problems("train", 1), 30))
    assert {p.meta["task_type"] for p in problems} == set(TASK_TYPES)
    assert all(p.meta["role"] == "propose" and PROPOSAL_RULES in task.prompt(p)
               for p in problems)
    checked = task.check_batch(problems, [task.target(p) for p in problems])
    assert all(c.correct for c in checked)
    induction = next(p for p in problems if p.meta["task_type"] == "induction")
    assert task.parse(induction, task.target(induction)) == induction.meta["message"]
    no_message = task.target(induction).split("</message>")[1]
    assert task.check(induction, no_message).answer is None
    # Proposer problems leave the solver stream untouched when propose is 0.
    plain = list(itertools.islice(ProgramTask(executor=ex).problems("train", 1), 20))
    assert all("role" not in p.meta for p in plain)
