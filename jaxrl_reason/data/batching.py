"""Turns (prompt, completion) texts into fixed-shape training batches, and back.

Sequences are [BOS] prompt completion [EOS], right-padded with 0 to a length bucket; the
loss mask covers the completion and EOS only, so prompt tokens are never trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxrl_reason.tokenizers import Tokenizer


def encode_prompt(tok: Tokenizer, prompt: str) -> list[int]:
    return [tok.bos_id, *tok.encode(prompt)]


def make_batch(
    tok: Tokenizer,
    pairs: Sequence[tuple[str, str]],
    seq_len: int,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Builds {tokens, loss_mask} [B, seq_len]; rows beyond len(pairs) are all padding.

    A sequence longer than seq_len is an error, not a silent truncation: a cut-off
    rationale would train the model to stop mid-answer."""
    b = batch_size or len(pairs)
    tokens = np.zeros((b, seq_len), np.int32)
    mask = np.zeros((b, seq_len), np.int32)
    for i, (prompt, completion) in enumerate(pairs):
        p = encode_prompt(tok, prompt)
        c = [*tok.encode(completion), tok.eos_id]
        if len(p) + len(c) > seq_len:
            raise ValueError(
                f"example of {len(p) + len(c)} tokens exceeds seq_len={seq_len}; raise the job's "
                f"seq_len binding (prompt starts {prompt[:40]!r})"
            )
        tokens[i, : len(p) + len(c)] = p + c
        mask[i, len(p) : len(p) + len(c)] = 1
    return {"tokens": tokens, "loss_mask": mask}


def decode_completions(tok: Tokenizer, tokens: np.ndarray, lengths: np.ndarray) -> list[str]:
    """Texts of sampled completions (stop token and padding removed)."""
    return [tok.decode(row[:n]) for row, n in zip(tokens, lengths, strict=True)]


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


class ExampleStream:
    """Endless, resumable batches over a fixed list of (prompt, completion) pairs.

    Epoch e is a permutation drawn from (seed, e), cut into groups of `group` batches whose
    examples are sorted by length before batching (so batches hold similar lengths and train
    on short arrays: sequence length is rounded up to `len_bucket` per batch). The state is
    just the batch index, so a resumed stream yields exactly an uninterrupted one's batches."""

    def __init__(
        self,
        tok: Tokenizer,
        pairs: Sequence[tuple[str, str]],
        batch_size: int,
        max_len: int,
        seed: int = 0,
        len_bucket: int = 16,
        group: int = 8,
    ):
        if not pairs:
            raise ValueError("ExampleStream: no examples to train on")
        self.tok, self.pairs, self.batch_size = tok, list(pairs), batch_size
        self.max_len, self.seed, self.len_bucket, self.group = max_len, seed, len_bucket, group
        self.index = 0
        self._epoch: tuple[int, list[np.ndarray]] | None = None
        self._lengths = np.array(
            [len(encode_prompt(tok, p)) + len(tok.encode(c)) + 1 for p, c in self.pairs]
        )
        self.batches_per_epoch = max(1, len(self.pairs) // batch_size)

    def get_state(self) -> dict:
        return {"index": self.index}

    def set_state(self, state: dict) -> None:
        self.index = int(state["index"])

    def _batches(self, epoch: int) -> list[np.ndarray]:
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.pairs))
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
        seq_len = min(_round_up(longest, self.len_bucket), self.max_len)
        return make_batch(self.tok, [self.pairs[i] for i in idx], seq_len)
