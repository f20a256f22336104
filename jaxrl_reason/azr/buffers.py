"""The task buffers of Absolute Zero self-play: one per task type, of program triples.

An entry is a `Seed` (a program, its message, its executed (input, output) pairs) with the
step it entered at (0 for the seeds). Every draw takes a `random.Random` that the job keys
on (seed, step, stream), and the whole buffer goes into the checkpoint as JSON, so a resumed
run draws exactly what an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from jaxrl_reason.data.programs import Seed, seed_programs, split_of
from jaxrl_reason.errors import require

# AZR's seed triple (the identity on "Hello world"), with a second pair so that an induction
# problem (half the pairs shown, half hidden) can be made from it.
IDENTITY = Seed("Returns its argument unchanged.", "def f(a):\n    return a",
                (("'Hello world'", "'Hello world'"), ("[1, 2, 3]", "[1, 2, 3]")))
SEED_SETS = ("identity", "train", "both")


@dataclasses.dataclass(frozen=True)
class Entry:
    triple: Seed
    step: int


class Buffer:
    """The valid triples of one task type, in the order they entered."""

    def __init__(self, entries: Sequence[Entry] = ()):
        self.entries = list(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, triples: Sequence[Seed], step: int) -> None:
        self.entries += [Entry(t, step) for t in triples]

    def draw(self, k: int, rng: random.Random) -> list[Seed]:
        """min(k, size) triples without replacement: a proposer's references."""
        return [e.triple for e in rng.sample(self.entries, min(k, len(self.entries)))]

    def solver_batch(self, b: int, step: int, rng: random.Random) -> list[Seed]:
        """b triples: this step's new ones first (newest first, as AZR's solver takes the
        proposals it just validated), then older ones sampled without replacement, then
        (a buffer smaller than b) any, with replacement."""
        new = [e.triple for e in reversed(self.entries) if e.step == step][:b]
        older = [e.triple for e in self.entries if e.step != step]
        out = new + rng.sample(older, min(b - len(new), len(older)))
        return out + [e.triple for e in rng.choices(self.entries, k=b - len(out))]

    def distinct_programs(self) -> int:
        return len({e.triple.program for e in self.entries})

    def to_json(self) -> list[dict]:
        return [{"message": e.triple.message, "program": e.triple.program,
                 "io": [list(p) for p in e.triple.io], "step": e.step} for e in self.entries]

    @staticmethod
    def from_json(rows: Sequence[dict]) -> Buffer:
        return Buffer([Entry(Seed(r["message"], r["program"], tuple(map(tuple, r["io"]))),
                             r["step"]) for r in rows])


def seed_triples(which: str) -> list[Seed]:
    """The starting triples: AZR's identity program, the hand-written seeds of the TRAIN split
    (the test split is the held-out evaluation and never enters a buffer), or both."""
    require(which in SEED_SETS, "azr.seeds", which, f"must be one of {SEED_SETS}")
    train = [s for s in seed_programs() if split_of(s.program) == "train"]
    return {"identity": [IDENTITY], "train": train, "both": [IDENTITY, *train]}[which]
