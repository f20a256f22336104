"""Token examples and the fixed-shape batches built from them.

An `Example` is token ids, never text: (prompt ids, completion ids). A gold example's
completion ends in EOS (`encode_example`); a sampled one is what the sampler emitted, with its
stop token only if it really stopped (a truncated row has none, and none is added). Nothing
re-encodes decoded text to recover ids.

Every batch is a dict of [B, T] arrays laid out the same way: rows right-padded with the
tokenizer's pad id, and explicit `input_mask` (real tokens), `positions` and `loss_mask`
(1 where the token is a training target: completion tokens only). Per-token fields that losses
read (`old_logprobs`, `advantages`, `weights`, ...) are aligned with `tokens`: entry t is about
token t as a target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

import numpy as np

from jaxrl_reason.errors import UserError
from jaxrl_reason.tokenizers import Tokenizer


def round_up(x: int, m: int) -> int:
    """x rounded up to a multiple of m."""
    return -(-x // m) * m


@dataclasses.dataclass(frozen=True)
class Example:
    prompt: tuple[int, ...]
    completion: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.prompt) + len(self.completion)


def encode_prompt(tok: Tokenizer, prompt: str) -> list[int]:
    return [tok.bos_id, *tok.encode(prompt)]


def encode_example(tok: Tokenizer, prompt: str, completion: str) -> Example:
    """A gold (prompt, completion) text pair as ids: BOS + prompt, completion + EOS."""
    return Example(tuple(encode_prompt(tok, prompt)), (*tok.encode(completion), tok.eos_id))


def make_batch(
    examples: Sequence[Example],
    seq_len: int,
    pad_id: int,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """{tokens, input_mask, positions, loss_mask} [B, seq_len]; rows past the examples are
    all padding (masks 0).

    A sequence longer than seq_len is an error, not a silent truncation: a cut-off rationale
    would train the model to stop mid-answer."""
    b = batch_size or len(examples)
    tokens = np.full((b, seq_len), pad_id, np.int32)
    input_mask = np.zeros((b, seq_len), bool)
    positions = np.zeros((b, seq_len), np.int32)
    loss_mask = np.zeros((b, seq_len), np.int32)
    for i, ex in enumerate(examples):
        n, p = len(ex), len(ex.prompt)
        if n > seq_len:
            raise UserError(
                f"an example of {n} tokens exceeds the batch length {seq_len}; raise the job's "
                f"max_len binding (prompt ids start {list(ex.prompt[:12])})")
        tokens[i, :n] = (*ex.prompt, *ex.completion)
        input_mask[i, :n] = True
        positions[i, :n] = np.arange(n)
        loss_mask[i, p:n] = 1
    return {"tokens": tokens, "input_mask": input_mask, "positions": positions,
            "loss_mask": loss_mask}


def step_ends(completion: Sequence[int], delimiters: Collection[int],
              stop_ids: Collection[int] = ()) -> list[int]:
    """Indices into `completion` of the last token of each step: each delimiter token (e.g. the
    newline ending a line), and the last token before the stop token (or of a truncated row)
    when something follows the last delimiter. A stop token right after a delimiter ends no
    step of its own."""
    ids = list(completion)
    while ids and ids[-1] in stop_ids:
        ids.pop()
    ends = [i for i, t in enumerate(ids) if t in delimiters]
    if ids and (not ends or ends[-1] != len(ids) - 1):
        ends.append(len(ids) - 1)
    return ends


class ExampleStream:
    """Endless, resumable batches over a fixed list of examples.

    Epoch e is a permutation drawn from (seed, e), cut into groups of `group` batches whose
    examples are sorted by length before batching (so batches hold similar lengths and train
    on short arrays: sequence length is rounded up to `len_bucket` per batch). The state is
    just the batch index, so a resumed stream yields exactly an uninterrupted one's batches."""

    def __init__(
        self,
        examples: Sequence[Example],
        batch_size: int,
        max_len: int,
        pad_id: int,
        seed: int = 0,
        len_bucket: int = 16,
        group: int = 8,
    ):
        if not examples:
            raise UserError("ExampleStream: no examples to train on")
        self.examples, self.batch_size, self.pad_id = list(examples), batch_size, pad_id
        self.max_len, self.seed, self.len_bucket, self.group = max_len, seed, len_bucket, group
        self.index = 0
        self._epoch: tuple[int, list[np.ndarray]] | None = None
        self._lengths = np.array([len(e) for e in self.examples])
        self.batches_per_epoch = max(1, len(self.examples) // batch_size)

    def get_state(self) -> dict:
        return {"index": self.index}

    def set_state(self, state: dict) -> None:
        self.index = int(state["index"])

    def _batches(self, epoch: int) -> list[np.ndarray]:
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.examples))
            if len(order) < self.batch_size:  # tiny sets: repeat to fill one batch
                order = np.resize(order, self.batch_size)
            chunk = self.batch_size * self.group
            batches = []
            for start in range(0, self.batches_per_epoch * self.batch_size, chunk):
                part = order[start : min(start + chunk, self.batches_per_epoch * self.batch_size)]
                part = part[np.argsort(self._lengths[part], kind="stable")]
                batches += [
                    part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)
                ]
            self._epoch = (epoch, [batches[i] for i in rng.permutation(len(batches))])
        return self._epoch[1]

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        idx = self._batches(self.index // self.batches_per_epoch)[
            self.index % self.batches_per_epoch
        ]
        self.index += 1
        longest = int(self._lengths[idx].max())
        seq_len = min(round_up(longest, self.len_bucket), self.max_len)
        return make_batch([self.examples[i] for i in idx], seq_len, self.pad_id)
