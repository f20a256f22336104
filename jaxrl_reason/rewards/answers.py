"""Final-answer extraction and equality: the outcome reward of every math task.

Equality is tried cheapest first: normalized strings, then exact numbers (fractions, decimals,
percent and currency signs stripped), then tuples and intervals element by element, and only
then sympy. Sympy can hang or exhaust memory on adversarial input (e.g. `9^9^9^9`), and a
signal alarm cannot interrupt it inside C code, so symbolic checks run in a long-lived worker
subprocess that is killed and restarted whenever one check exceeds its time limit.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from fractions import Fraction

_DIGITS = re.compile(r"\d+")


def parse_answer_line(completion: str, tag: str = "A:") -> str | None:
    """The digits on the first line starting with `tag`; None when missing or not all digits."""
    for line in completion.split("\n"):
        if line.startswith(tag):
            rest = line[len(tag) :]
            return rest if _DIGITS.fullmatch(rest) else None
    return None


# Thousands separators as written in text and LaTeX: "1,000", "1{,}000", "1,\\!000", "1\\,000".
_SEPARATOR = r"(?:,|\{,\}|,\\!|\\,)"
_NUMBER_IN_TEXT = re.compile(
    rf"-?(?:\d{{1,3}}(?:{_SEPARATOR}\d{{3}})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+"
)


def extract_answer(text: str) -> str | None:
    """The final answer: GSM8K's `#### n`, else the last `\\boxed{}`, else the last number
    (thousands separated by ",", "{,}", ",\\!" or "\\," stay one number)."""
    hashes = text.rfind("####")
    if hashes >= 0:
        answer = text[hashes + 4 :].split("\n", 1)[0].strip()
        return answer or None
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    numbers = _NUMBER_IN_TEXT.findall(text)
    return numbers[-1] if numbers else None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` or `\\fbox{...}` (nested braces); None if absent."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    body = _braced(text, text.index("{", start))
    return None if body is None else body[0]


def _braced(text: str, open_at: int) -> tuple[str, int] | None:
    """(content, index after the closing brace) of the group opening at `open_at`."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1 : i], i + 1
    return None


_THOUSANDS = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")
_PLAIN_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)")
_FRACTION = re.compile(r"([-+]?\d+)/(\d+)")
_LATEX_FRACTION = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}")


def parse_number(text: str) -> Fraction | None:
    """An exact number from "1,000", "$3.50", "25%", "3/4", "\\frac{3}{4}", "7.0"; else None.

    Percent signs are dropped, not divided out: "25%" answers "25" in GSM8K-style data.
    """
    s = _strip_decorations(text)
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if _PLAIN_NUMBER.fullmatch(s):
        return Fraction(s)
    if m := _FRACTION.fullmatch(s):
        return Fraction(int(m[1]), int(m[2])) if int(m[2]) else None
    if m := _LATEX_FRACTION.fullmatch(s):
        num, den = int(m[2]), int(m[3])
        return (-1 if m[1] else 1) * Fraction(num, den) if den else None
    return None


def numbers_equal(pred: str, gold: str, rel_tol: float = 1e-6) -> bool:
    """Numeric equality tolerant of formatting; exact for fractions, `rel_tol` for decimals."""
    a, b = parse_number(pred), parse_number(gold)
    if a is None or b is None:
        return False
    return a == b or abs(a - b) <= rel_tol * max(abs(a), abs(b))


_DROP = [
    "\\left",
    "\\right",
    "\\!",
    "\\,",
    "\\;",
    "\\:",
    "\\ ",
    "\\displaystyle",
    "^\\circ",
    "^{\\circ}",
    "°",
    "\\%",
    "%",
    "\\$",
    "$",
    "\\(",
    "\\)",
    "\\[",
    "\\]",
]
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|operatorname)\{")
_FRAC_VARIANT = re.compile(r"\\[dtc]frac")
_SHORT_FRAC = re.compile(r"\\frac(\d)(\d)")
_SHORT_SQRT = re.compile(r"\\sqrt(\d)")
_VARIABLE_PREFIX = re.compile(r"[a-zA-Z]\w*=(?!=)")


def _strip_decorations(text: str) -> str:
    """The last box's content (the box may sit in a sentence) without math delimiters, LaTeX
    spacing, %, $, degree signs or a trailing period; `{,}` as ",", one spelling of \\frac."""
    s = text.strip()
    boxed = last_boxed(s)
    if boxed is not None:
        s = boxed
    for token in _DROP:
        s = s.replace(token, "")
    s = s.replace("{,}", ",")  # LaTeX's unspaced comma: "1{,}000"
    s = _FRAC_VARIANT.sub(r"\\frac", s)
    s = _SHORT_FRAC.sub(r"\\frac{\1}{\2}", s)
    return s.strip().rstrip(".").strip()


def normalize(text: str) -> str:
    """A canonical spelling: no boxes, text wrappers, units in \\text, spaces, degree or % signs."""
    s = _strip_decorations(text)
    s = _unwrap_text(s)
    s = _SHORT_SQRT.sub(r"\\sqrt{\1}", s)
    s = re.sub(r"\s+", "", s)
    if _VARIABLE_PREFIX.match(s) and s.count("=") == 1:
        s = s.split("=", 1)[1]  # "x=5" answers "5"
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return s


def _unwrap_text(s: str) -> str:
    """`\\text{...}` keeps its content, except a trailing unit after a value ("5\\text{ cm}")."""
    while m := _TEXT_COMMAND.search(s):
        group = _braced(s, m.end() - 1)
        if group is None:
            return s
        content, end = group
        is_unit = m.start() > 0 and not s[end:].strip() and re.search(r"[A-Za-z]", content)
        s = s[: m.start()] + ("" if is_unit else content) + s[end:]
    return s


def answers_equal(pred: str, gold: str, timeout_s: float = 2.0) -> bool:
    """Whether `pred` and `gold` denote the same math answer; False (never a hang) when unsure."""
    a, b = normalize(pred), normalize(gold)
    if not a or not b:
        return False
    return _equal_normalized(a, b, timeout_s)


def _equal_normalized(a: str, b: str, timeout_s: float) -> bool:
    if a == b:
        return True
    na, nb = parse_number(a), parse_number(b)
    if na is not None and nb is not None:
        return na == nb or abs(na - nb) <= 1e-6 * max(abs(na), abs(nb))
    ta, tb = _split_tuple(a), _split_tuple(b)
    if ta is not None or tb is not None:
        if ta is None or tb is None or ta[0] != tb[0] or len(ta[1]) != len(tb[1]):
            return False
        return all(_equal_normalized(x, y, timeout_s) for x, y in zip(ta[1], tb[1], strict=True))
    sa, sb = latex_to_sympy(a), latex_to_sympy(b)
    if sa is None or sb is None:
        return False
    return _SYMPY.equal(sa, sb, timeout_s)


def _split_tuple(s: str) -> tuple[str, list[str]] | None:
    """("(]", ["1", "2"]) for "(1,2]": brackets and top-level elements; None if not a tuple."""
    if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
        return None
    parts, depth, current = [], 0, ""
    for ch in s[1:-1]:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                return None  # "(1)+(2)": the outer brackets do not pair up
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    if depth != 0 or len(parts) < 2:
        return None
    return s[0] + s[-1], parts


_LATEX_WORDS = {
    "\\pi": "pi",
    "\\infty": "oo",
    "\\cdot": "*",
    "\\times": "*",
    "\\div": "/",
    "\\ln": "log",
    "\\log": "log",
    "\\exp": "exp",
    "\\sin": "sin",
    "\\cos": "cos",
    "\\tan": "tan",
}
_SYMPY_NAMES = {"sqrt", "pi", "oo", "log", "exp", "sin", "cos", "tan"}
_SAFE_SYMPY = re.compile(r"[\w\s.+\-*/()^]*")


def latex_to_sympy(s: str) -> str | None:
    """A sympy-parseable string for simple LaTeX, or None when it uses anything else.

    Letter runs other than a few known functions become products of single-letter symbols
    ("2ab" is 2*a*b), and dots only appear inside numbers, so the string handed to
    `parse_expr` (which evaluates Python) cannot name or reach anything dangerous.
    """
    s = _replace_command(s, "\\frac", 2, "(({0})/({1}))")
    if s is None:
        return None
    s = re.sub(r"\\sqrt\[([^\]]*)\]\{", r"\\root{\1}{", s)
    s = _replace_command(s, "\\root", 2, "(({1})**(1/({0})))")
    s = _replace_command(s, "\\sqrt", 1, "sqrt({0})")
    if s is None:
        return None
    for word, repl in sorted(_LATEX_WORDS.items(), key=lambda kv: -len(kv[0])):
        s = s.replace(word, f" {repl} ")
    s = s.replace("{", "(").replace("}", ")")
    if "\\" in s or not _SAFE_SYMPY.fullmatch(s) or re.search(r"\.(?!\d)|_", s):
        return None
    s = re.sub(r"[A-Za-z]+", lambda m: m[0] if m[0] in _SYMPY_NAMES else "*".join(m[0]), s)
    return s.replace("^", "**")


def _replace_command(s: str | None, command: str, n_args: int, template: str) -> str | None:
    """Rewrites `command{a}{b}` with `template`, innermost-last; None on unbalanced braces."""
    while s is not None and (start := s.find(command + "{")) >= 0:
        args, pos = [], start + len(command)
        for _ in range(n_args):
            if pos >= len(s) or s[pos] != "{" or (group := _braced(s, pos)) is None:
                return None
            args.append(group[0])
            pos = group[1]
        s = s[:start] + template.format(*args) + s[pos:]
    return s


class _SympyWorker:
    """A sympy subprocess answering one JSON line per request; killed and respawned on timeout."""

    def __init__(self, start_timeout_s: float = 60.0):
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        atexit.register(self.close)

    def equal(self, a: str, b: str, timeout_s: float) -> bool:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            if self._proc is None:
                return False
            try:
                os.write(self._proc.stdin.fileno(), (json.dumps([a, b]) + "\n").encode())
                reply = self._read_line(timeout_s)
            except OSError:  # the worker died between checks
                reply = None
            if reply is None:
                self.close()
            return reply == "1"

    def _start(self) -> None:
        # run_path keeps the worker free of package imports (and of jax, if a caller loaded it).
        serve = f"import runpy; runpy.run_path({__file__!r}, run_name='__main__')"
        self._proc = subprocess.Popen(
            [sys.executable, "-c", serve],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        if self._read_line(self._start_timeout_s) != "ready":
            self.close()

    def _read_line(self, timeout_s: float) -> str | None:
        fd, data = self._proc.stdout.fileno(), b""
        deadline = time.monotonic() + timeout_s
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            data += chunk
        return data.decode().strip()

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None


_SYMPY = _SympyWorker()
_WORKER_MEMORY_BYTES = 2 << 30


def _serve() -> None:
    """Worker loop: reads [a, b] JSON lines, writes "1" / "0" (errors count as unequal)."""
    import resource

    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    limit = _WORKER_MEMORY_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # huge powers fail fast, not swap
    transformations = (*standard_transformations, implicit_multiplication_application, convert_xor)
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            a, b = (parse_expr(x, transformations=transformations) for x in json.loads(line))
            verdict = sympy.simplify(a - b) == 0
        except Exception:
            verdict = False
        print("1" if verdict else "0", flush=True)


if __name__ == "__main__":
    _serve()
