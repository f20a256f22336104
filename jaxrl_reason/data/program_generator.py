"""Seeded random Python programs for the base model of Absolute Zero self-play.

Why: self-play needs a base that already reads and writes small Python (ALGORITHMS.md section
7; AZR starts from a pretrained coder). At our scale the base is SFT'd on triples of generated
programs instead. The programs come from a small typed grammar (int arithmetic with guarded
division, comparisons and if/else, bounded for/while loops, string and list operations,
comprehensions) so their structure varies, not just their constants.

Two halves: `sample_program(rng)` is pure and never runs anything; `generate_seeds` runs the
candidates in the sandboxed executor (`rewards.programs.validate_programs`: banned constructs,
time limit, determinism) and keeps the valid ones, with outputs taken from those runs.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import itertools
import random
import re
from collections.abc import Callable, Iterator, Sequence

from jaxrl_reason.data.programs import Seed
from jaxrl_reason.rewards.executor import Executor
from jaxrl_reason.rewards.programs import validate_programs

INT, STR, LIST, BOOL = "int", "str", "list", "bool"
ARG_NAMES = {INT: ("n", "m", "k"), STR: ("s", "t", "w"), LIST: ("xs", "ys", "zs")}
LOCAL_NAMES = {INT: ("total", "count", "acc", "best", "p", "q"),
               STR: ("out", "res", "word", "buf"),
               LIST: ("vals", "result", "items", "seen")}
LOOP_NAMES = {"elem": ("x", "y", "v"), "char": ("ch", "c"), "index": ("i", "j")}
INITIAL = {INT: ("0", "1"), STR: ("''",), LIST: ("[]",)}
WORDS = ("a", "ab", "xy", "cat", "-", "", "o", "b", "dog", "z")
LETTERS = "abcdeimnorstxyzAB"
TYPE_WORDS = {INT: "an integer", STR: "a string", LIST: "a list of integers", BOOL: "a boolean",
              "tuple": "a pair"}
FEATURE_ORDER = ("arithmetic", "comparisons", "a condition", "a for loop", "a while loop",
                 "string methods", "list methods", "sorting", "a comprehension", "slicing",
                 "indexing")
CALLS = {"string methods": {"upper", "lower", "strip", "capitalize", "title", "replace", "join",
                            "split", "startswith", "endswith", "count", "find", "isalpha",
                            "islower", "isupper", "isdigit", "str", "ord"},
         "list methods": {"append", "insert", "reverse", "sum", "max", "min", "range", "len"},
         "sorting": {"sorted", "sort"}}

# Precedence of an expression's outermost operator, to parenthesize only where needed.
ATOM, MUL, ADD, CMP, NOT, AND, OR, TERN = 9, 7, 6, 4, 3, 2, 1, 0
Expr = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A generated program before execution: its inputs (argument lists as literals) and a
    template message describing it (for induction)."""

    program: str
    inputs: tuple[str, ...]
    message: str


def _reads_variable(make: Callable[[_Builder, int], Expr]) -> Callable[[_Builder, int], Expr]:
    """Compound expressions read a variable (a few tries): `abs(2 - 7)` teaches nothing."""
    def wrapped(self: _Builder, depth: int) -> Expr:
        for _ in range(4):
            e = make(self, depth)
            if depth <= 0 or self.mentions(e[0]):
                break
        return e
    return functools.wraps(make)(wrapped)


def _wrap(e: Expr, prec: int) -> str:
    return e[0] if e[1] >= prec else f"({e[0]})"


def _bin(left: Expr, op: str, right: Expr, prec: int) -> Expr:
    return f"{_wrap(left, prec)} {op} {_wrap(right, prec + 1)}", prec


def _cmp(left: Expr, op: str, right: Expr) -> Expr:
    return f"{_wrap(left, CMP + 1)} {op} {_wrap(right, CMP + 1)}", CMP


class _Builder:
    """Writes one program: typed variables in scope, statement by statement. Names assigned
    in a block die with it (a loop may not run), loop iterables and counters are frozen in
    their bodies, and inside loops an update never reads its own variable twice, so values
    grow at most linearly with the (small) iteration counts."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.scope: dict[str, str] = {}
        self.chars: set[str] = set()  # str variables holding one character
        self.frozen: set[str] = set()
        self.loops = 0
        self.focus: str | None = None  # the innermost loop variable
        self.lines: list[str] = []

    # ---- helpers -------------------------------------------------------------------------
    def choose(self, options: Sequence[tuple[float, Callable[[], Expr]]]) -> Expr:
        weights, makers = zip(*options, strict=True)
        return self.rng.choices(makers, weights)[0]()

    def names(self, kind: str) -> list[str]:
        return [v for v, t in self.scope.items() if t == kind]

    def fresh(self, pool: Sequence[str]) -> str:
        free = [v for v in pool if v not in self.scope]
        return self.rng.choice(free) if free else f"{pool[0]}{len(self.scope)}"

    @contextlib.contextmanager
    def hidden(self, name: str):
        """Leaves `name` out of the scope while an update's right-hand side is written."""
        kind = self.scope.pop(name)
        try:
            yield
        finally:
            self.scope[name] = kind

    @contextlib.contextmanager
    def block(self, frozen: Sequence[str] = (), loop: bool = False):
        saved = dict(self.scope), set(self.chars), set(self.frozen), self.focus
        self.frozen |= set(frozen)
        self.loops += loop
        try:
            yield
        finally:
            self.scope, self.chars, self.frozen, self.focus = saved
            self.loops -= loop

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def small(self, lo: int = 1, hi: int = 5) -> Expr:
        return str(self.rng.randint(lo, hi)), ATOM

    # ---- expressions ---------------------------------------------------------------------
    def expr(self, kind: str, depth: int) -> Expr:
        return {INT: self.int_e, STR: self.str_e, LIST: self.list_e, BOOL: self.cond}[kind](depth)

    def live(self, kind: str, depth: int) -> Expr:
        """An expression that reads some variable in scope (a few tries), so conditions and
        values depend on the inputs rather than on constants."""
        for _ in range(8):
            e = self.expr(kind, depth)
            if self.mentions(e[0]):
                break
        return e

    def mentions(self, text: str) -> bool:
        return bool(set(re.findall(r"[A-Za-z_]\w*", re.sub(r"'[^']*'", "", text)))
                    & set(self.scope))

    def leaf(self, kind: str) -> Expr:
        """A variable of `kind` mostly (often the innermost loop's), else a literal, or (half
        the time, when no variable has that type) a value derived from another variable."""
        rng, names = self.rng, self.names(kind)
        if self.focus in names and rng.random() < 0.4:
            return self.focus, ATOM
        if names and rng.random() < 0.85:
            return rng.choice(names), ATOM
        others = [v for v in self.scope if self.scope[v] in (STR, LIST)] if kind == INT else \
            self.names(INT)
        if not names and others and rng.random() < 0.5:
            v = rng.choice(others)
            return {INT: f"len({v})", STR: f"str({v})", LIST: f"[{v}]"}[kind], ATOM
        if kind == INT:
            return self.small(0, 9)
        if kind == STR:
            return repr(rng.choice(WORDS)), ATOM
        return repr([rng.randint(0, 9) for _ in range(rng.randint(0, 3))]), ATOM

    def two(self, make: Callable[[], Expr]) -> tuple[Expr, Expr]:
        """Two expressions from `make`, different where a few tries allow (no `n - n`)."""
        first = make()
        for _ in range(3):
            second = make()
            if second[0] != first[0]:
                break
        return first, second

    @_reads_variable
    def int_e(self, depth: int) -> Expr:
        if depth <= 0:
            return self.leaf(INT)
        d, rng = depth - 1, self.rng

        def arith() -> Expr:
            left, right = self.two(lambda: self.int_e(d))
            return _bin(left, rng.choice("+-"), right, ADD)

        def mul() -> Expr:
            return _bin(self.int_e(d), "*", self.small(2, 4), MUL)

        def divmod_() -> Expr:  # literal divisor, abs() + 1, or an explicit zero test
            op, guard = rng.choice(("//", "%")), rng.randrange(3)
            if guard == 0:
                return _bin(self.int_e(d), op, self.small(2, 7), MUL)
            a, b = self.two(lambda: self.leaf(INT) if rng.random() < 0.5 else self.int_e(d))
            if not self.mentions(b[0]) or b[1] < ATOM:
                return _bin(a, op, self.small(2, 7), MUL)
            if guard == 1:
                return _bin(a, op, (f"(abs({b[0]}) + 1)", ATOM), MUL)
            return f"{_bin(a, op, b, MUL)[0]} if {b[0]} != 0 else 0", TERN

        def length() -> Expr:
            return f"len({self.expr(rng.choice((STR, LIST)), d)[0]})", ATOM

        def reduce_() -> Expr:
            fn = rng.choice(("sum", "max", "min"))
            default = ", default=0" if fn != "sum" else ""
            return f"{fn}({self.list_e(d)[0]}{default})", ATOM

        def pair() -> Expr:
            a, b = self.two(lambda: self.int_e(d))
            return f"{rng.choice(('max', 'min'))}({a[0]}, {b[0]})", ATOM

        def count() -> Expr:
            fn = rng.choice(("count", "find"))
            return f"{_wrap(self.str_e(d), ATOM)}.{fn}({rng.choice('abeo')!r})", ATOM

        def index() -> Expr:
            xs = rng.choice(self.names(LIST))
            at = rng.choice(("0", "-1", f"{_wrap(self.leaf(INT), MUL)} % len({xs})"))
            return f"{xs}[{at}] if {xs} else {self.small(0, 3)[0]}", TERN

        def ternary() -> Expr:
            yes, no = self.two(lambda: self.int_e(d))
            return (f"{_wrap(yes, OR)} if {_wrap(self.cond(d), OR)} else {_wrap(no, TERN)}",
                    TERN)

        options = [(3, lambda: self.leaf(INT)), (3, arith), (1.5, mul), (2, divmod_),
                   (1.5, length), (1.5, reduce_), (0.7, pair), (0.8, count),
                   (0.8 * bool(self.names(LIST)), index), (0.6, ternary)]
        if self.chars & set(self.scope):
            ch = rng.choice(sorted(self.chars & set(self.scope)))
            options.append((1, lambda: (f"ord({ch}) % {rng.randint(2, 10)}", MUL)))
        return self.choose(options)

    @_reads_variable
    def str_e(self, depth: int) -> Expr:
        if depth <= 0:
            return self.leaf(STR)
        d, rng = depth - 1, self.rng

        def concat() -> Expr:
            left, right = self.two(lambda: self.str_e(d))
            return _bin(left, "+", right, ADD)

        def slice_() -> Expr:
            i, j = sorted(rng.sample(range(0, 6), 2))
            part = rng.choice(("::-1", f":{j}", f"{i}:", f"{i}:{j}", "::2", "1:-1"))
            return f"{_wrap(self.str_e(d), ATOM)}[{part}]", ATOM

        def method() -> Expr:
            call = rng.choice(("upper()", "lower()", "strip()", "capitalize()", "title()",
                               f"replace({rng.choice('aeo')!r}, {rng.choice(WORDS[:5])!r})"))
            return f"{_wrap(self.str_e(d), ATOM)}.{call}", ATOM

        def join() -> Expr:
            e = self.str_e(d)
            s, atom = e[0], _wrap(e, ATOM)
            return rng.choice((f"''.join(reversed({s}))", f"'-'.join({atom}.split())",
                               f"' '.join(sorted({atom}.split()))", f"''.join(sorted({s}))",
                               f"{rng.choice(WORDS[:5])!r}.join({atom}.split())")), ATOM

        def repeat() -> Expr:
            return _bin(self.str_e(d), "*", self.small(0, 3), MUL)

        def from_int() -> Expr:
            return f"str({self.int_e(d)[0]})", ATOM

        def from_list() -> Expr:
            sep = rng.choice(("", "-", ","))
            x = self.fresh(LOOP_NAMES["elem"])
            return f"{sep!r}.join(str({x}) for {x} in {_wrap(self.list_e(d), OR)})", ATOM

        def filtered() -> Expr:
            c = self.fresh(LOOP_NAMES["char"])
            test = rng.choice((f"{c} not in 'aeiou'", f"{c} in 'aeiou'", f"{c} != ' '",
                               f"{c}.isalpha()", f"{c}.islower()"))
            return f"''.join({c} for {c} in {_wrap(self.str_e(d), OR)} if {test})", ATOM

        def char_at() -> Expr:
            s = rng.choice(self.names(STR))
            return f"{s}[{_wrap(self.int_e(d), MUL)} % len({s})] if {s} else ''", TERN

        def ternary() -> Expr:
            yes, no = self.two(lambda: self.str_e(d))
            return (f"{_wrap(yes, OR)} if {_wrap(self.cond(d), OR)} else {_wrap(no, TERN)}",
                    TERN)

        options = [(3, lambda: self.leaf(STR)), (2, concat), (2, slice_), (2.5, method),
                   (1.2, join), (1, from_int), (0.7, from_list), (0.8, filtered),
                   (0.8 * bool(self.names(STR)), char_at), (0.5, ternary)]
        if self.loops == 0:
            options.append((0.7, repeat))
        return self.choose(options)

    @_reads_variable
    def list_e(self, depth: int) -> Expr:
        if depth <= 0:
            return self.leaf(LIST)
        d, rng = depth - 1, self.rng
        x = self.fresh(LOOP_NAMES["elem"])

        def sort() -> Expr:
            rev = ", reverse=True" if rng.random() < 0.3 else ""
            return f"sorted({self.list_e(d)[0]}{rev})", ATOM

        def slice_() -> Expr:
            part = rng.choice(("::-1", f":{rng.randint(1, 4)}", f"{rng.randint(1, 3)}:", "::2"))
            return f"{_wrap(self.list_e(d), ATOM)}[{part}]", ATOM

        def concat() -> Expr:
            right = self.list_e(d) if rng.random() < 0.5 else (f"[{self.int_e(d)[0]}]", ATOM)
            return _bin(self.list_e(d), "+", right, ADD)

        def mapped() -> Expr:
            op = rng.choice(("+", "-", "*", "%"))
            k = self.small(2, 5) if op in "*%" else self.int_e(min(d, 0))
            return f"[{_bin((x, ATOM), op, k, MUL if op in '*%' else ADD)[0]} " \
                   f"for {x} in {_wrap(self.list_e(d), OR)}]", ATOM

        def kept() -> Expr:
            test = rng.choice((f"{x} % 2 == 0", f"{x} % 2 == 1", f"{x} > {self.leaf(INT)[0]}",
                               f"{x} != {self.small(0, 5)[0]}"))
            return f"[{x} for {x} in {_wrap(self.list_e(d), OR)} if {test}]", ATOM

        def span() -> Expr:
            k = self.small(1, 6)[0]
            i = self.fresh(LOOP_NAMES["index"])
            form = rng.choice((f"list(range({k}))", f"[{i} * {i} for {i} in range({k})]",
                               f"list(range({k}, 0, -1))"))
            return form, ATOM

        def from_str() -> Expr:
            s, c = self.str_e(d), self.fresh(LOOP_NAMES["char"])
            return rng.choice((f"[len(part) for part in {_wrap(s, ATOM)}.split()]",
                               f"[ord({c}) % 10 for {c} in {_wrap(s, OR)}]")), ATOM

        def dedup() -> Expr:
            return f"sorted(set({self.list_e(d)[0]}))", ATOM

        return self.choose([(3, lambda: self.leaf(LIST)), (1.5, sort), (1.5, slice_),
                            (1.2, concat), (2, mapped), (1.5, kept), (0.8, span),
                            (0.8, from_str), (0.4, dedup)])

    @_reads_variable
    def cond(self, depth: int) -> Expr:
        rng = self.rng
        d = max(depth - 1, 0)

        def ints() -> Expr:
            left, right = self.two(lambda: self.int_e(d))
            return _cmp(left, rng.choice(("<", "<=", ">", ">=", "==", "!=")), right)

        def parity() -> Expr:
            return _cmp(_bin(self.int_e(d), "%", self.small(2, 3), MUL), "==", self.small(0, 1))

        def strs() -> Expr:
            s = _wrap(self.str_e(d), ATOM)
            return rng.choice((f"{s}.startswith({rng.choice('abc')!r})",
                               f"{s}.endswith({rng.choice('aty')!r})",
                               f"{rng.choice('aeo')!r} in {s}", f"{s} == {s}[::-1]",
                               f"len({s}) > {rng.randint(1, 4)}")), CMP

        def lists() -> Expr:
            xs = self.list_e(d)[0]
            return rng.choice((f"{_wrap(self.int_e(0), CMP + 1)} in {xs}",
                               f"len({xs}) > {rng.randint(0, 3)}",
                               f"{xs} == sorted({xs})" if xs.isidentifier() else f"not {xs}")), CMP

        def combine() -> Expr:
            op = rng.choice(("and", "or"))
            prec = AND if op == "and" else OR
            left, right = self.two(lambda: self.cond(d))
            return _bin(left, op, right, prec)

        def negate() -> Expr:
            return f"not {_wrap(self.cond(d), NOT)}", NOT

        options = [(3, ints), (1.5, parity), (2, strs), (1.5, lists)]
        if depth > 0:
            options += [(0.8, combine), (0.4, negate)]
        if self.chars & set(self.scope):
            ch = rng.choice(sorted(self.chars & set(self.scope)))
            options.append((2, lambda: (rng.choice((f"{ch} in 'aeiou'", f"{ch}.isupper()",
                                                    f"{ch} == {rng.choice('abt')!r}",
                                                    f"{ch}.isdigit()")), CMP)))
        return self.choose(options)

    # ---- statements ----------------------------------------------------------------------
    def reads(self, text: str) -> list[str]:
        return [n for n in re.findall(r"[A-Za-z_]\w*", text) if n in self.scope]

    def mutable(self) -> list[str]:
        return [v for v in self.scope if v not in self.frozen and v not in self.chars]

    def assign(self, indent: int) -> None:
        """A new local of a random type."""
        kind = self.rng.choice((INT, STR, LIST))
        name = self.fresh(LOCAL_NAMES[kind])
        value = self.live(kind, self.rng.randint(1, 2))[0]
        self.emit(indent, f"{name} = {value}")
        self.scope[name] = kind

    def update(self, indent: int, name: str | None = None) -> None:
        """Changes an existing variable, reading it at most once."""
        name = name or self.rng.choice(self.mutable())
        kind, rng = self.scope[name], self.rng
        with self.hidden(name):
            if kind == INT:
                op = rng.choice(("+=", "-=", "+=", "*=", "%=", "//="))
                rhs = self.small(2, 5)[0] if op in ("*=", "%=", "//=") else self.int_e(1)[0]
                line = f"{name} {op} {rhs}"
            elif kind == STR:
                line = rng.choice((f"{name} += {self.str_e(1)[0]}",
                                   f"{name} = {_wrap(self.str_e(1), ADD)} + {name}",
                                   f"{name} = {name}.{rng.choice(('upper', 'lower'))}()",
                                   f"{name} = {name}[::-1]"))
            else:
                line = rng.choice((f"{name}.append({self.int_e(1)[0]})",
                                   f"{name}.append({self.int_e(1)[0]})",
                                   f"{name}.insert(0, {self.int_e(1)[0]})",
                                   f"{name} += [{self.int_e(1)[0]}]", f"{name}.sort()",
                                   f"{name}.reverse()"))
        self.emit(indent, line)

    def accumulator(self, indent: int) -> str:
        """A fresh variable a following loop can update."""
        kind = self.rng.choice((INT, STR, LIST))
        name = self.fresh(LOCAL_NAMES[kind])
        self.emit(indent, f"{name} = {self.rng.choice(INITIAL[kind])}")
        self.scope[name] = kind
        return name

    def body(self, indent: int, nest: int, target: str | None = None) -> None:
        """A loop's or branch's statements: first an update of an outer variable (`target`,
        the accumulator set up for it, where there is one)."""
        if not self.mutable():
            self.emit(indent, "pass")
            return
        self.update(indent, target if target in self.mutable() else None)
        for _ in range(self.rng.choice((0, 0, 1))):
            self.statement(indent, nest)

    def if_(self, indent: int, nest: int, target: str | None = None) -> None:
        self.emit(indent, f"if {self.live(BOOL, 2)[0]}:")
        with self.block():
            self.body(indent + 1, nest + 1, target)
        if self.rng.random() < 0.25:
            self.emit(indent, f"elif {self.live(BOOL, 1)[0]}:")
            with self.block():
                self.body(indent + 1, nest + 1, target)
        if self.rng.random() < 0.6:
            self.emit(indent, "else:")
            with self.block():
                self.body(indent + 1, nest + 1, target)

    def for_(self, indent: int, nest: int, target: str | None = None) -> None:
        rng = self.rng
        lists, strs, ints = ([v for v in self.names(k) if v != target] for k in (LIST, STR, INT))
        form = rng.choices(("elem", "char", "index"), (2 * bool(lists) + 0.3,
                                                       2 * bool(strs) + 0.3, 1.5))[0]
        var = self.fresh(LOOP_NAMES[form])
        frozen = [var]
        if form == "elem":
            source = rng.choice(lists) if lists and rng.random() < 0.7 else \
                self.live(LIST, 1)[0]
            kind = INT
        elif form == "char":
            source = rng.choice(strs) if strs and rng.random() < 0.7 else self.live(STR, 1)[0]
            kind = STR
        else:
            kind = INT
            bounds = [self.small(1, 6)[0]] + [f"len({v})" for v in lists + strs] + \
                [f"min(abs({v}), 6)" for v in ints]
            source = f"range({rng.choice(bounds)})"
        frozen += [source] if source.isidentifier() else []
        self.emit(indent, f"for {var} in {source}:")
        with self.block(frozen, loop=True):
            self.scope[var] = kind
            self.focus = var
            if form == "char":
                self.chars.add(var)
            self.body(indent + 1, nest + 1, target)

    def while_(self, indent: int, nest: int, target: str | None = None) -> None:
        rng = self.rng
        var = self.fresh(LOOP_NAMES["index"] + ("r", "u"))
        if rng.random() < 0.5:  # a counter up to a small bound
            self.emit(indent, f"{var} = 0")
            ints = self.names(INT)
            bound = f"min(abs({rng.choice(ints)}), 5)" if ints and rng.random() < 0.5 else \
                self.small(2, 6)[0]
            head, step = f"while {var} < {bound}:", f"{var} += 1"
        else:  # a value that shrinks to zero
            self.emit(indent, f"{var} = abs({self.live(INT, 1)[0]})")
            head, step = f"while {var} > 0:", f"{var} //= {rng.randint(2, 4)}"
        self.scope[var] = INT
        self.emit(indent, head)
        with self.block([var, *self.reads(head)], loop=True):
            self.body(indent + 1, nest + 1, target)
        self.emit(indent + 1, step)
        self.frozen.discard(var)

    def statement(self, indent: int, nest: int) -> None:
        options: list[tuple[float, Callable[..., None]]] = [(2, lambda i, n, t: self.assign(i))]
        if self.mutable():
            options.append((2, lambda i, n, t: self.update(i)))
        if nest < 2:
            options += [(1.5, self.if_), (1.5, self.for_), (0.7, self.while_)]
        weights, makers = zip(*options, strict=True)
        maker = self.rng.choices(makers, weights)[0]
        target = None
        if maker in (self.for_, self.while_) and self.rng.random() < 0.6:
            target = self.accumulator(indent)
        maker(indent, nest, target)

    def guard(self, kind: str) -> None:
        """An early return."""
        self.emit(1, f"if {self.live(BOOL, 1)[0]}:")
        self.emit(2, f"return {self.returned(kind)}")

    def returned(self, kind: str) -> str:
        if kind == "tuple":
            return f"({self.live(INT, 1)[0]}, {self.live(self.rng.choice((STR, LIST)), 1)[0]})"
        locals_ = [v for v in self.names(kind) if v not in ARG_NAMES.get(kind, ())]
        if locals_ and self.rng.random() < 0.7:
            return self.rng.choice(locals_)
        return self.live(kind, 2)[0]


def sample_program(rng: random.Random, max_chars: int = 320) -> Candidate:
    """One program of at most `max_chars` characters (1-3 arguments of type int / str /
    list[int], every argument and local read), six random inputs for it and a template
    message. Pure: nothing is run."""
    while True:
        b = _Builder(rng)
        kinds = [rng.choice((INT, STR, LIST)) for _ in range(rng.choices((1, 2, 3), (4, 4, 2))[0])]
        args: list[str] = []
        for k in kinds:
            args.append(rng.choice([n for n in ARG_NAMES[k] if n not in args]))
            b.scope[args[-1]] = k
        returns = rng.choices((INT, STR, LIST, BOOL, "tuple"), (4, 3, 3, 1, 0.5))[0]
        if rng.random() < 0.15:
            b.guard(returns)
        for _ in range(rng.choices((1, 2, 3, 4), (3, 4, 3, 1))[0]):
            b.statement(1, 0)
        b.emit(1, f"return {b.returned(returns)}")
        program = f"def f({', '.join(args)}):\n" + "\n".join(b.lines)
        if len(program) <= max_chars and _all_read(program, args):
            inputs = _distinct_inputs(rng, kinds, 6)
            return Candidate(program, inputs, _message(args, kinds, returns, features(program)))


def _all_read(program: str, args: Sequence[str]) -> bool:
    """Every argument and every assigned name is read somewhere (no dead stores)."""
    names = [n for n in ast.walk(ast.parse(program)) if isinstance(n, ast.Name)]
    read = {n.id for n in names if isinstance(n.ctx, ast.Load)}
    return {n.id for n in names if isinstance(n.ctx, ast.Store)} | set(args) <= read


def _distinct_inputs(rng: random.Random, kinds: Sequence[str], count: int) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for _ in range(20 * count):
        seen.setdefault(", ".join(repr(random_value(rng, k)) for k in kinds))
        if len(seen) == count:
            break
    return tuple(seen)


def random_value(rng: random.Random, kind: str) -> int | str | list[int]:
    """A small input value of `kind`: ints mostly 0..12, short strings (sometimes several
    words), lists of 0-6 small ints."""
    if kind == INT:
        return rng.randint(0, 12) if rng.random() < 0.7 else rng.randint(-5, 30)
    if kind == STR:
        words = [("".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 5))))
                 for _ in range(rng.choice((1, 1, 2, 3)))]
        return " ".join(words) if rng.random() < 0.9 else ""
    return [rng.randint(-3, 15) for _ in range(rng.choice((0, 1, 2, 3, 4, 5, 6)))]


def features(program: str) -> list[str]:
    """The construct families `program` uses, read from its syntax tree (FEATURE_ORDER)."""
    found = set()
    for node in ast.walk(ast.parse(program)):
        op = getattr(node, "op", None)
        if isinstance(op, ast.Sub | ast.FloorDiv | ast.Mod | ast.Mult | ast.Add):
            found.add("arithmetic")
        kinds = {ast.Compare: "comparisons", ast.If: "a condition", ast.IfExp: "a condition",
                 ast.For: "a for loop", ast.While: "a while loop",
                 ast.ListComp: "a comprehension", ast.GeneratorExp: "a comprehension"}
        if type(node) in kinds:
            found.add(kinds[type(node)])
        if isinstance(node, ast.Subscript):
            found.add("slicing" if isinstance(node.slice, ast.Slice) else "indexing")
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            for family, names in CALLS.items():
                if name in names:
                    found.add(family)
    return [f for f in FEATURE_ORDER if f in found]


def _message(args: Sequence[str], kinds: Sequence[str], returns: str,
             used: Sequence[str]) -> str:
    takes = " and ".join(f"{TYPE_WORDS[k]} {a}" for a, k in zip(args, kinds, strict=True))
    uses = ", ".join(used[:-1]) + f" and {used[-1]}" if len(used) > 1 else "".join(used)
    return f"Takes {takes} and returns {TYPE_WORDS[returns]}" + (f", using {uses}." if uses
                                                                 else ".")


def sample_programs(seed: int) -> Iterator[Candidate]:
    """The endless candidate stream of `seed` (pure, deterministic)."""
    rng = random.Random(f"program-generator-{seed}")
    while True:
        yield sample_program(rng)


def generate_seeds(executor: Executor, count: int, seed: int, pairs: int = 6,
                   max_output_chars: int = 40, chunk: int = 256,
                   timeout_s: float | None = 2.0) -> list[Seed]:
    """`count` valid programs of `seed`'s stream as `Seed`s with `pairs` (input, output) pairs,
    outputs from running them in `executor` (AZR validity: no banned construct, runs in time,
    deterministic). Programs whose outputs are all equal, or longer than `max_output_chars`,
    are dropped, and so are repeats. Deterministic in `seed` (given deterministic runs), and
    the first k programs of a count are those of count k: candidates are kept in stream order,
    run in chunks of at most `chunk`."""
    if count < 0 or not 2 <= pairs <= 6:
        raise ValueError(f"need count >= 0 and 2 <= pairs <= 6, got {count}, {pairs}")
    stream, out, seen, tried = sample_programs(seed), [], set(), 0
    while len(out) < count:
        if tried > 50 * count + 100:
            raise RuntimeError(f"only {len(out)} of {count} generated programs were valid "
                               f"after {tried} candidates: is the executor working?")
        need = min(chunk, (count - len(out)) * 5 // 4 + 2)  # ~80% of candidates are kept
        batch = [c for c in itertools.islice(stream, need) if c.program not in seen]
        tried += need
        seen.update(c.program for c in batch)
        batch = [dataclasses.replace(c, inputs=c.inputs[:pairs]) for c in batch
                 if len(c.inputs) >= pairs]
        verdicts = validate_programs(executor, [(c.program, c.inputs) for c in batch], timeout_s)
        for c, v in zip(batch, verdicts, strict=True):
            if v.valid and len(set(v.outputs)) > 1 and max(map(len, v.outputs)) <= max_output_chars:
                out.append(Seed(c.message, c.program, tuple(zip(c.inputs, v.outputs, strict=True))))
    return out[:count]
