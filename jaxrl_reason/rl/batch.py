"""The one typed batch of an RL step, from the scored rollouts to the loss (tunix's
`TrainExample` is the model).

`RLBatch.from_rollouts` lays the kept rollouts out in a fixed number of rows (empty rows after
the real ones, so each shape compiles once); the learner then fills pi_old, the reference,
the critic's values and the advantages with `dataclasses.replace`. The advantage estimators
read its reward fields on the host; the loss reads `loss_view()` on the device. Every array is
[R, T] aligned with `tokens` (entry t concerns token t as a target) or [R].
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from jaxrl_reason.data.batching import Example, make_batch, round_up
from jaxrl_reason.rollouts import Rollouts

HOST_ONLY = ("completion_mask", "sampler_logprobs", "finished", "group", "outcome",
             "step_rewards", "step_rewarded", "token_rewards")


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["tokens", "input_mask", "positions", "loss_mask", "completion_mask",
                 "sampler_logprobs", "finished", "group", "outcome", "step_rewards",
                 "step_rewarded", "token_rewards", "old_logprobs", "ref_logprobs",
                 "old_values", "advantages", "returns"],
    meta_fields=["temperature", "max_new_tokens", "mini_batch_rows"])
@dataclasses.dataclass(frozen=True)
class RLBatch:
    """Rows of prompt + completion ids, what the sampler and the rewards said of them, and
    what the learner computes from them.

    - model inputs: `tokens`, `input_mask`, `positions`; `completion_mask` (1 at completion
      tokens) and `loss_mask` (the tokens that train: the completion, without truncated rows
      under DAPO's overlong mask);
    - from the sampler: `sampler_logprobs` (its own log-probs, kept to report their gap to
      pi_old), `finished` [R] (stopped before the budget);
    - rewards: `group` [R] (prompt index, -1 on empty rows), `outcome` [R] (scored at the last
      completion token), `step_rewards` at the last token of each rewarded step
      (`step_rewarded`), optional dense `token_rewards` (the KL penalty as a reward);
    - from the learner: `old_logprobs` (pi_old, recomputed by the trainer), `ref_logprobs`,
      `old_values` (the critic's value of the state each token is drawn from), `advantages`
      and `returns` (the critic's targets);
    - constants of the run: the sampling `temperature`, the generation budget `max_new_tokens`
      (the length-normalized aggregations' L), and the rows of a global mini-batch.
    """

    tokens: np.ndarray
    input_mask: np.ndarray
    positions: np.ndarray
    loss_mask: np.ndarray
    completion_mask: np.ndarray | None = None
    group: np.ndarray | None = None
    outcome: np.ndarray | None = None
    step_rewards: np.ndarray | None = None
    step_rewarded: np.ndarray | None = None
    sampler_logprobs: np.ndarray | None = None
    finished: np.ndarray | None = None
    token_rewards: np.ndarray | None = None
    old_logprobs: np.ndarray | None = None
    ref_logprobs: np.ndarray | None = None
    old_values: np.ndarray | None = None
    advantages: np.ndarray | None = None
    returns: np.ndarray | None = None
    temperature: float = 1.0
    max_new_tokens: int = 0
    mini_batch_rows: int = 0

    @staticmethod
    def from_rollouts(rollouts: Rollouts, outcome: np.ndarray, steps: list[np.ndarray],
                      pad_id: int, rows: int, seq_bucket: int, max_len: int,
                      temperature: float, max_new_tokens: int, mini_batches: int) -> RLBatch:
        """The rollouts' exact ids in `rows` rows, with their combined rewards: `outcome` [N]
        and per-row step values aligned with `rollouts.step_ends` (NaN: no reward there)."""
        examples = [Example(p, c) for p, c in zip(rollouts.prompt_ids, rollouts.completion_ids,
                                                   strict=True)]
        longest = max((len(e) for e in examples), default=1)
        seq_len = min(round_up(longest, seq_bucket), max_len)
        inputs = make_batch(examples, seq_len, pad_id, rows)
        n = len(examples)
        sampler_lp = np.zeros(inputs["tokens"].shape, np.float32)
        step_rewards = np.zeros(inputs["tokens"].shape)
        step_rewarded = np.zeros(inputs["tokens"].shape, bool)
        for r, (e, ends, values) in enumerate(zip(examples, rollouts.step_ends, steps,
                                                   strict=True)):
            sampler_lp[r, len(e.prompt): len(e)] = rollouts.logprobs[r]
            ok = ~np.isnan(values)
            at = len(e.prompt) + np.asarray(ends, int)[ok]
            step_rewards[r, at] = values[ok]
            step_rewarded[r, at] = True
        pad = lambda x, fill: np.concatenate(  # noqa: E731
            [np.asarray(x), np.full(rows - n, fill, np.asarray(x).dtype)])
        mask = inputs["loss_mask"].astype(np.float32)
        return RLBatch(
            tokens=inputs["tokens"], input_mask=inputs["input_mask"],
            positions=inputs["positions"], loss_mask=mask, completion_mask=mask,
            group=pad(rollouts.group.astype(int), -1),
            outcome=pad(np.asarray(outcome, np.float64), 0.0),
            step_rewards=step_rewards, step_rewarded=step_rewarded,
            sampler_logprobs=sampler_lp, finished=pad(rollouts.finished.astype(bool), False),
            temperature=float(temperature), max_new_tokens=int(max_new_tokens),
            mini_batch_rows=rows // mini_batches)

    def __getitem__(self, name: str):
        """Field by name: the trainer reads the model inputs of any batch this way."""
        return getattr(self, name)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def real_rows(self) -> int:
        """Rows holding a rollout (they come first)."""
        return int((self.group >= 0).sum())

    def rows(self, index) -> RLBatch:
        """The rows at `index` (a slice or an index array) of every array field."""
        return jax.tree.map(lambda x: x[index], self)

    def loss_view(self) -> RLBatch:
        """The fields the loss reads; the rest stay on the host."""
        return dataclasses.replace(self, **dict.fromkeys(HOST_ONLY))

    def model_inputs(self) -> dict[str, np.ndarray]:
        """What a forward pass reads (the trainer's log-prob and value passes)."""
        return {k: getattr(self, k) for k in ("tokens", "input_mask", "positions", "loss_mask")}

    # ---- the rewards as the estimators read them ---------------------------------------------
    @property
    def mask(self) -> np.ndarray:
        return self.completion_mask

    @property
    def values(self) -> np.ndarray | None:
        return self.old_values

    @property
    def step_positions(self) -> list[np.ndarray]:
        """Per row, the token indices of its rewarded steps' last tokens."""
        return [np.flatnonzero(r) for r in self.step_rewarded]

    @property
    def step_values(self) -> list[np.ndarray]:
        return [v[r] for v, r in zip(self.step_rewards, self.step_rewarded, strict=True)]

    def last_positions(self) -> np.ndarray:
        """[R] the index of each row's last completion token (0 for an empty row)."""
        t = self.mask.shape[1]
        rev = np.argmax(self.mask[:, ::-1] > 0, axis=1)
        return np.where(self.mask.any(axis=1), t - 1 - rev, 0)

    def dense(self) -> np.ndarray:
        """[R, T] every reward at its token: outcome + step rewards + token rewards."""
        mask = self.mask.astype(np.float64)
        out = np.zeros(mask.shape)
        out[np.arange(len(mask)), self.last_positions()] += self.outcome * mask.any(axis=1)
        out += np.where(self.step_rewarded, self.step_rewards, 0.0)
        if self.token_rewards is not None:
            out += self.token_rewards * mask
        return out * mask

    def scores(self) -> np.ndarray:
        """[R] each row's total reward (the sum of its events)."""
        return self.dense().sum(axis=1)
