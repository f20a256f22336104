"""Absolute Zero checks over (program, input, output) triples, all by execution.

A program defines `def f(...)`; an input is the argument list as written inside `f(...)`
(Python literals); an output is `repr(f(*args))`. Proposed programs are validated (AST ban,
runs in time, deterministic); solutions are checked by running them in the sandboxed
executor, batched through `Executor.run_batch`. The reward formulas are pure functions.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Sequence

from jaxrl_reason.rewards.executor import Executor

# AZR's list, plus what reaches the same places by another name.
BANNED_MODULES = frozenset({
    "os", "sys", "subprocess", "threading", "multiprocessing", "random", "time", "datetime",
    "socket", "shutil", "ctypes", "importlib", "builtins", "signal", "resource", "gc",
    "inspect", "io", "pathlib", "tempfile", "glob", "pickle", "marshal", "asyncio",
    "concurrent", "secrets", "uuid", "platform", "posix", "_thread", "pty", "select", "mmap",
    "code", "codeop", "runpy", "pdb", "traceback", "sysconfig", "site", "atexit", "weakref",
    "faulthandler", "tracemalloc", "fcntl", "urllib", "http", "ftplib", "smtplib", "requests",
})
BANNED_NAMES = frozenset({  # banned wherever they appear: aliasing them must not help
    "__import__", "eval", "exec", "compile", "open", "globals", "locals", "vars", "breakpoint",
    "__builtins__", "__loader__", "__spec__", "__build_class__",
})
BANNED_CALLS = frozenset({"id", "dir", "input", "help", "exit", "quit"})  # fine as variables
# Functions that reach attributes by a string name -> which positional argument is the name
# (-1: all of them). Allowed only when called directly with plain constant names.
ATTR_FUNCTIONS = {"getattr": 1, "setattr": 1, "delattr": 1, "hasattr": 1, "attrgetter": -1,
                  "methodcaller": 0}
# Introspection attributes that lead back to modules, frames or builtins.
BANNED_ATTRS = frozenset({
    "__class__", "__bases__", "__base__", "__mro__", "__subclasses__", "__globals__",
    "__builtins__", "__dict__", "__code__", "__closure__", "__func__", "__self__", "__module__",
    "__import__", "__loader__", "__spec__", "__getattribute__", "__reduce__", "__reduce_ex__",
    "__init_subclass__", "__subclasshook__", "__traceback__", "tb_frame", "f_globals",
    "f_locals", "f_back", "f_builtins", "gi_frame", "gi_code", "cr_frame", "ag_frame",
    "co_code", "mro",
})
MAX_INPUT_CHARS = 10_000
_MARK = "\x1e<<f-output>>\x1e"  # precedes the repr of f's return value on stdout
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # reprs with memory addresses are not values


def banned_reason(program: str) -> str | None:
    """Why `program` is not an acceptable proposal, or None. Handles dotted imports
    (`import os.path`), aliases, relative imports and name/attribute tricks."""
    try:
        tree = ast.parse(program)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        return f"does not parse: {type(e).__name__}"
    if not any(isinstance(n, ast.FunctionDef) and n.name == "f" for n in tree.body):
        return "defines no top-level f"
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in BANNED_MODULES:
                    return f"imports {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            if node.level or not node.module:
                return "relative import"
            if node.module.split(".")[0] in BANNED_MODULES:
                return f"imports from {node.module}"
            if any(a.name in ATTR_FUNCTIONS and a.asname not in (None, a.name)
                   for a in node.names):
                return "renames an attribute-access function"
        elif isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if isinstance(node, ast.Name) and (
                    name in BANNED_NAMES or (name in BANNED_CALLS and id(node) in called)):
                return f"uses {name}"
            if isinstance(node, ast.Attribute) and name in BANNED_ATTRS:
                return f"uses .{name}"
            if name in ATTR_FUNCTIONS and id(node) not in called:
                return f"uses {name} other than by calling it"
        elif isinstance(node, ast.Call) and not _plain_attr_names(node):
            return "reaches an attribute by a computed or private name"
    return None


def _plain_attr_names(call: ast.Call) -> bool:
    """False if `call` is an attribute-access function given a non-constant or private name."""
    func = call.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    if name not in ATTR_FUNCTIONS:
        return True
    index = ATTR_FUNCTIONS[name]
    names = call.args if index < 0 else call.args[index:index + 1]
    if not names or call.keywords or any(isinstance(a, ast.Starred) for a in call.args):
        return False
    for arg in names:
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            return False
        if any(part.startswith("_") or part in BANNED_ATTRS for part in arg.value.split(".")):
            return False
    return True


def extract_tagged(completion: str, open_tag: str, close_tag: str) -> str | None:
    """The text inside the last `open_tag`...`close_tag` pair, stripped; None if absent."""
    end = completion.rfind(close_tag)
    start = completion.rfind(open_tag, 0, max(end, 0))
    if end < 0 or start < 0:
        return None
    return completion[start + len(open_tag):end].strip()


def strip_code_fence(text: str) -> str:
    """`text` without a surrounding markdown code fence (```python ... ```)."""
    match = re.fullmatch(r"```[\w+-]*\n(.*?)\n?```", text.strip(), flags=re.DOTALL)
    return match.group(1) if match else text


def parse_program(text: str) -> str | None:
    """`text` (code fence removed) if it parses as Python, else None."""
    code = strip_code_fence(text)
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    return code


def parse_input(text: str) -> tuple | None:
    """The argument tuple that `text` (as written inside `f(...)`) denotes, or None if it is
    not a plain list of Python literals."""
    if len(text) > MAX_INPUT_CHARS:
        return None
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        if not isinstance(call, ast.Call) or call.keywords or not (
                isinstance(call.func, ast.Name) and call.func.id == "f"):
            return None
        return tuple(ast.literal_eval(arg) for arg in call.args)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return None


def harness(program: str, text: str) -> str:
    """Source that runs `program`, calls f on the literal arguments `text` and prints the
    repr of the result after a marker (the program may print too). The arguments are parsed
    inside the sandbox, never evaluated as code."""
    return (f"{program}\n\n"
            "def _azr_call():\n"
            "    import ast\n"
            f"    call = ast.parse('f(' + {text!r} + ')', mode='eval').body\n"
            "    assert isinstance(call, ast.Call) and not call.keywords, 'bad input'\n"
            "    args = [ast.literal_eval(a) for a in call.args]\n"
            f"    print({_MARK!r} + repr(f(*args)))\n"
            "_azr_call()\n")


def outputs_equal(a: str, b: str) -> bool:
    """Equal as Python values where both are literals (so {1, 2} == {2, 1}), else as text."""
    a, b = a.strip(), b.strip()
    if a == b:
        return True
    if len(a) > MAX_INPUT_CHARS or len(b) > MAX_INPUT_CHARS:
        return False
    try:
        return bool(ast.literal_eval(a) == ast.literal_eval(b))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return False


def run_calls(executor: Executor, calls: Sequence[tuple[str, str]],
              timeout_s: float | None = None) -> list[str | None]:
    """`repr(f(*args))` for each (program, input), or None where the run did not succeed."""
    results = executor.run_batch([harness(p, i) for p, i in calls], timeout_s=timeout_s)
    outs: list[str | None] = []
    for r in results:
        head, mark, value = r.stdout.rpartition(_MARK)
        outs.append(value.rstrip("\n") if r.ok and mark and not r.truncated else None)
    return outs


@dataclasses.dataclass(frozen=True)
class Validation:
    """Whether a proposed program is a valid task, why not, and its outputs on the inputs."""

    valid: bool
    reason: str
    outputs: tuple[str, ...] = ()


def validate_programs(executor: Executor, proposals: Sequence[tuple[str, Sequence[str]]],
                      timeout_s: float | None = None) -> list[Validation]:
    """AZR validity for each (program, inputs): no banned construct, every input a literal
    argument list, runs within the limit, and deterministic -- two runs, identical output
    that is a value (no memory addresses). All runs go through one `run_batch`."""
    verdicts: list[Validation | None] = []
    calls: list[tuple[str, str]] = []
    for program, inputs in proposals:
        reason = banned_reason(program)
        if reason is None and not inputs:
            reason = "no inputs"
        if reason is None:
            bad = [i for i in inputs if parse_input(i) is None]
            reason = f"input is not a literal argument list: {bad[0][:80]!r}" if bad else None
        verdicts.append(None if reason is None else Validation(False, reason))
        if reason is None:
            calls += [(program, i) for i in inputs for _ in range(2)]
    outs = iter(run_calls(executor, calls, timeout_s))
    results = []
    for (_, inputs), verdict in zip(proposals, verdicts, strict=True):
        if verdict is None:
            pairs = [(next(outs), next(outs)) for _ in inputs]
            verdict = _verdict(pairs)
        results.append(verdict)
    return results


def _verdict(pairs: list[tuple[str | None, str | None]]) -> Validation:
    for first, second in pairs:
        if first is None or second is None:
            return Validation(False, "fails, times out or exceeds a limit")
        if first != second or _ADDRESS.search(first):
            return Validation(False, "nondeterministic")
    return Validation(True, "ok", tuple(first for first, _ in pairs))


def check_deduction(output: str, predicted: str) -> bool:
    """Deduction: the predicted output equals the executed one, by value."""
    return outputs_equal(predicted, output)


def check_abductions(executor: Executor, items: Sequence[tuple[str, str, str]],
                     timeout_s: float | None = None) -> list[bool]:
    """Abduction, per (program, output, proposed input): does f(proposed input) == output?"""
    ok = [parse_input(proposed) is not None for _, _, proposed in items]
    calls = [(p, i) for (p, _, i), good in zip(items, ok, strict=True) if good]
    outs = iter(run_calls(executor, calls, timeout_s))
    return [good and _matches(next(outs), o) for (_, o, _), good in zip(items, ok, strict=True)]


def check_inductions(executor: Executor, items: Sequence[tuple[str, Sequence[tuple[str, str]]]],
                     timeout_s: float | None = None) -> list[bool]:
    """Induction, per (proposed program, hidden (input, output) pairs): does the program,
    free of banned constructs, reproduce every hidden output?"""
    ok = [banned_reason(p) is None and bool(hidden) for p, hidden in items]
    calls = [(p, i) for (p, hidden), good in zip(items, ok, strict=True) if good
             for i, _ in hidden]
    outs = iter(run_calls(executor, calls, timeout_s))
    verdicts = []
    for (_, hidden), good in zip(items, ok, strict=True):
        if good:
            verdicts.append(all([_matches(next(outs), o) for _, o in hidden]))
        else:
            verdicts.append(False)
    return verdicts


def _matches(out: str | None, expected: str) -> bool:
    return out is not None and outputs_equal(out, expected)


# ---- rewards (ALGORITHMS.md section 7) -----------------------------------------------------
def solver_reward(correct: bool) -> float:
    """The solver's reward: 1 if the answer checks by execution, else 0."""
    return 1.0 if correct else 0.0


def learnability_reward(solved: Sequence[bool]) -> float:
    """The proposer's reward: 1 - mean solve rate over the solver's samples (AZR: n=8), and 0
    when every sample or no sample solved it (a task that teaches nothing)."""
    if not solved:
        raise ValueError("need at least one solver sample")
    rate = sum(map(bool, solved)) / len(solved)
    return 0.0 if rate in (0.0, 1.0) else 1.0 - rate


def format_aware_reward(role_reward: float, passable: bool, well_formed: bool) -> float:
    """AZR's composite reward: the role's reward for a passable response (a correct answer,
    a valid proposal), -0.5 for a well-formed but wrong one, -1 for a malformed one."""
    if not well_formed:
        return -1.0
    return role_reward if passable else -0.5
