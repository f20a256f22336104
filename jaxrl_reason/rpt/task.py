"""RPT's task: at a hard position of a held corpus, read the text so far, reason, then commit to
a continuation in `\\boxed{}`; correct iff its bytes are a prefix of the true continuation that
ends on a true token boundary (rewards/prefix_match.py).

Positions are prepared once per run (rpt/loop.py) into `<positions>/<split>.jsonl`: the
context as text, the true next tokens' bytes, and the proxy model's top-16 entropy there.
Splits follow the documents', so a test position's text was never trained on.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence

import gin

from jaxrl_reason import files
from jaxrl_reason.data.tasks import SPLITS, Check, Problem
from jaxrl_reason.errors import UserError
from jaxrl_reason.rewards.prefix_match import prefix_match

MARK = " [next]"  # ends every prompt: the context stops here
BOX = "\\boxed{"
# The paper's evaluation splits: positions whose proxy entropy exceeds each threshold.
ENTROPY_SPLITS = {"easy": 0.5, "medium": 1.0, "hard": 1.5}


def difficulty(entropy: float) -> int:
    """How many of the paper's thresholds (0.5, 1.0, 1.5) the entropy exceeds: 0-3."""
    return sum(entropy > t for t in ENTROPY_SPLITS.values())


def position_record(context: str, tail: str, truth: Sequence[bytes], entropy: float, doc: int,
                    t: int) -> dict:
    """One line of a positions file; `tail` is the text of the context's last few tokens."""
    return {"context": context, "tail": tail, "truth": [b.hex() for b in truth],
            "entropy": round(entropy, 4), "doc": doc, "t": t}


def read_positions(path: str) -> list[Problem]:
    """The problems of a positions file: the context, the first true token as the answer (the
    format SFT's target) and every true token's bytes in meta["truth"]."""
    p = files.path(path)
    if not p.exists():
        raise UserError(f"no positions file {path}: prepare it with python -m jaxrl_reason.rpt")
    rows = [json.loads(line) for line in p.read_text().splitlines() if line]
    return [Problem(r["context"], bytes.fromhex(r["truth"][0]).decode("utf-8"),
                    difficulty=difficulty(r["entropy"]),
                    meta={"truth": tuple(bytes.fromhex(h) for h in r["truth"]),
                          "entropy": r["entropy"], "tail": r["tail"]})
            for r in rows]


def parse_commit(completion: str) -> str | None:
    """The continuation committed in the last `\\boxed{...}`; None if there is none."""
    start = completion.rfind(BOX)
    if start < 0:
        return None
    end = completion.find("}", start + len(BOX))
    return None if end < 0 else completion[start + len(BOX):end]


@gin.configurable
class RPTTask:
    """The Task protocol over prepared positions (`positions`: the directory holding
    train/valid/test .jsonl). Problem.difficulty is `difficulty(entropy)`."""

    name = "rpt"

    def __init__(self, positions: str = gin.REQUIRED):
        self.positions = positions
        self._cache: dict[str, list[Problem]] = {}

    def split(self, split: str) -> list[Problem]:
        """Every prepared position of `split`, in the file's order."""
        if split not in SPLITS:
            raise UserError(f"RPTTask split must be one of {SPLITS}, got {split!r}")
        if split not in self._cache:
            self._cache[split] = read_positions(str(files.path(self.positions) /
                                                    f"{split}.jsonl"))
        return self._cache[split]

    def problems(self, split: str, seed: int) -> Iterator[Problem]:
        """Train: endless, each pass over the positions in a fresh order drawn from `seed`.
        Valid / test: each position once, in the file's order."""
        pool = self.split(split)
        if split != "train":
            yield from pool
            return
        if not pool:  # an endless stream over nothing would never yield
            raise UserError(f"{self.positions}/train.jsonl holds no position")
        rng = random.Random(f"rpt-{seed}")
        while True:
            order = list(range(len(pool)))
            rng.shuffle(order)
            yield from (pool[i] for i in order)

    def prompt(self, problem: Problem, hint: str | None = None) -> str:
        return f"{problem.question}{MARK}"

    def target(self, problem: Problem, rationale: str | None = None) -> str:
        """Reasoning, then the true next token committed in the box. The format SFT's
        reasoning recalls where the text stopped (the text of its last few tokens), so the
        commit continues that recall as plain next-token prediction would; at our scale it
        teaches the shape, and RL may change it."""
        head = rationale if rationale is not None else problem.meta["tail"]
        return f"{head} {BOX}{problem.answer}}}"

    def check(self, problem: Problem, completion: str) -> Check:
        got = parse_commit(completion)
        return Check(got, got is not None and prefix_match(got, problem.meta["truth"]))
