"""Step checkers: one verdict per rationale step, the process labels for verifiers and PRMs.

The addition scratchpad is checked line by line against the exact expected line, so every
digit and carry is judged. GSM8K rationales are checked by re-running each `<<expr=value>>`
calculator annotation in the sandboxed executor.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from jaxrl_reason.rewards.answers import numbers_equal, parse_number


def addition_scratchpad(a: str, b: str) -> list[str]:
    """The gold scratch lines for `a+b` (decimal digit strings), without trailing newlines.

    Line 0 restates the operands with empty output and carry 0; each next line drops the
    last digit of each operand, prepends the new output digit and gives the new carry. An
    emptied operand is written as the empty string, so the last line has empty operands.
    """
    lines = [f"{a}+{b},C0"]
    out, carry = "", 0
    for k in range(1, max(len(a), len(b)) + 1):
        da = int(a[-k]) if k <= len(a) else 0
        db = int(b[-k]) if k <= len(b) else 0
        carry, digit = divmod(da + db + carry, 10)
        out = str(digit) + out
        lines.append(f"{a[: max(len(a) - k, 0)]}+{b[: max(len(b) - k, 0)]},{out}C{carry}")
    lines[-1] = lines[-1].replace("+", "", 1)
    return lines


def addition_columns(a: str, b: str) -> list[str]:
    """Column scratch lines for `a+b`, least significant column first: "x+y+c=ss" per column
    (x, y the column's digits, 0 past an operand's end; c the carry in; ss the two-digit sum).

    Every line reads two operand digits and the previous line's carry, so it is one step of
    the paper's "carry line per step", in an order a small model learns in minutes on a CPU.
    """
    lines, carry = [], 0
    for k in range(1, max(len(a), len(b)) + 1):
        x = a[-k] if k <= len(a) else "0"
        y = b[-k] if k <= len(b) else "0"
        total = int(x) + int(y) + carry
        lines.append(f"{x}+{y}+{carry}={total:02d}")
        carry = total // 10
    return lines


def scratch_steps(gold: list[str], completion: str) -> list[bool]:
    """Line k of `completion` is right iff it equals gold line k; missing lines are wrong.

    Comparing whole lines judges every digit and carry the line states.
    """
    got = completion.split("\n")
    return [k < len(got) and got[k] == line for k, line in enumerate(gold)]


class BatchExecutor(Protocol):
    """The part of `rewards.executor.Executor` the calculator checker uses."""

    def run_batch(self, codes: list[str]) -> list[Any]: ...


_ANNOTATION = re.compile(r"<<([^<>]*)>>")
# Only arithmetic reaches the sandbox: anything else in an annotation is a wrong step.
_ARITHMETIC = re.compile(r"[\d\s.+\-*/()]+")


def calculator_annotations(line: str) -> list[tuple[str, str] | None]:
    """`(expr, value)` for each `<<expr=value>>` in a line; None for a malformed annotation."""
    out: list[tuple[str, str] | None] = []
    for body in _ANNOTATION.findall(line):
        expr, eq, value = body.rpartition("=")
        out.append((expr, value) if eq and _ARITHMETIC.fullmatch(expr) else None)
    return out


def gsm8k_calculator_steps(rationale: str, executor: BatchExecutor) -> list[bool]:
    """One verdict per line of `rationale` (the text before GSM8K's "####"); an empty line
    counts, as a wrong step, so verdict k belongs to the k-th newline-ended step.

    A line is correct iff every `<<expr=value>>` in it is arithmetic that the sandbox
    evaluates to `value` (see `value_matches`); a malformed annotation, a sandbox error or
    a timeout makes the line wrong. Lines without annotations count as correct: GSM8K
    states many unannotated facts (restated givens, units, conclusions) that no exact
    checker can judge, and calling them wrong would punish correct solutions. All
    expressions of the rationale run in one `run_batch` call.
    """
    lines = rationale.split("\n")
    if lines[-1] == "":  # the text after the last newline is no line
        lines.pop()
    per_line = [calculator_annotations(ln) for ln in lines]
    codes = [f"print(repr({ann[0]}))" for anns in per_line for ann in anns if ann is not None]
    results = iter(executor.run_batch(codes) if codes else [])
    verdicts = []
    for line, anns in zip(lines, per_line, strict=True):
        ok = bool(line.strip())
        for ann in anns:
            if ann is None:
                ok = False
                continue
            res = next(results)
            ok = ok and res.status == "ok" and value_matches(res.stdout.strip(), ann[1])
        verdicts.append(ok)
    return verdicts


def value_matches(computed: str, stated: str) -> bool:
    """Whether a calculator result supports the stated value.

    Equal up to 1e-6 relative error, or, when the statement has decimals, equal after
    rounding the result to that many decimals ("10/3=3.33" is right, "10/3=3" is not).
    """
    if numbers_equal(computed, stated):
        return True
    value, decimals = parse_number(computed), stated.strip().partition(".")[2]
    if value is None or not decimals.isdigit():
        return False
    return numbers_equal(str(round(value, len(decimals))), stated)
