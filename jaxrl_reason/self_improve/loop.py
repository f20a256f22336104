"""Self-improvement for length generalization (Lee et al. 2025; ALGORITHMS.md section 2).

Round 0 trains on gold labels of 1..L digit additions (operand lengths drawn independently).
Round r = 1..R: the models LABEL fresh additions whose longer operand has L+r digits (pass after
pass of `label_inputs` inputs, until `labels_per_round` labels are kept), two filters
keep the trustworthy self-labels (never the truth: the checker only reports how precise the kept
labels were), and training RESUMES from the previous round's params with a re-warmed optimizer
(fresh moments, warmup, decay within the round). The baseline `self_label_rounds=False` runs the
same rounds, steps and schedule on gold data only. The newest round's labels fill ~half of every
batch; the rest is drawn uniformly from older data. A fraction `equal_length_share` of each
pass's inputs are additions of two L+r digit operands, the shape the vote otherwise starves
(measured worse at 0.5 and at 1.0: docs/self_improve.md).

Filters, because one wrong label trained on makes the next round's labels worse (the paper's
"error avalanche"):
- majority vote: `num_models` models trained from different seeds (in this process, on the same
  data) times `samples_per_model` samples each; a label is kept when >= `vote_threshold` of
  those outputs are the identical completion;
- length filter: a model that extrapolates badly tends to stop early, so labels whose answer is
  shorter than the round's longest by more than `length_slack` are dropped (slack 1 for
  addition, where two n-digit operands have an n- or (n+1)-digit sum).

Resume: each round's kept labels are written (atomically) before that round trains, every model
checkpoints its state with (round, data-stream state), and a round's summary line is written only
after every model's end-of-round checkpoint is on disk, so a killed run resumes at the round and
step it reached and ends with the same numbers.
"""

from __future__ import annotations

import collections
import itertools
import os
import random
import time
from collections.abc import Callable, Sequence

import gin
import jax
import numpy as np

from jaxrl_reason import common, files, plots, rng, rollouts
from jaxrl_reason.data.addition import AdditionTask, sample_operand, split_of
from jaxrl_reason.data.batching import Example, encode_example, make_batch, round_up
from jaxrl_reason.data.tasks import Problem
from jaxrl_reason.errors import UserError, typed
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.training.checkpoints import Checkpointer
from jaxrl_reason.training.loop import fit
from jaxrl_reason.training.metrics import MetricWriter, read_metrics

Label = tuple[int, ...]  # a completion's token ids, as the models emitted them


# ---- filters ------------------------------------------------------------------------------
def majority_vote(outputs: Sequence[Sequence[Label | None]], threshold: int) -> list[Label | None]:
    """Per input, its most common output when >= `threshold` outputs are that same string.

    None outputs (unfinished or unparseable) never count as votes. Ties go to the output seen
    first, so the result is deterministic."""
    winners: list[Label | None] = []
    for outs in outputs:
        counts = collections.Counter(o for o in outs if o is not None)
        best = counts.most_common(1)
        winners.append(best[0][0] if best and best[0][1] >= threshold else None)
    return winners


def length_filter(lengths: Sequence[int | None], slack: int = 0) -> list[bool]:
    """keep[i] iff lengths[i] >= (longest length in the batch) - slack; None is never kept."""
    longest = max((n for n in lengths if n is not None), default=None)
    return [n is not None and n >= longest - slack for n in lengths]


# ---- inputs ---------------------------------------------------------------------------------
def mixed_length_problems(task: AdditionTask, count: int, seed: int, split: str, longest: int,
                          exact: bool) -> list[Problem]:
    """`count` problems whose operand lengths are drawn independently from 1..longest; with
    `exact`, only those whose longer operand has `longest` digits (a round's new inputs).

    Independent lengths (as in the paper) vary the distance between an answer digit and the
    operand digits it sums, so the model cannot memorize one offset per length."""
    rng = random.Random(f"self-improve-{seed}-{split}-{longest}-{exact}")
    out: list[Problem] = []
    while len(out) < count:
        n_a, n_b = rng.randint(1, longest), rng.randint(1, longest)
        if exact and max(n_a, n_b) < longest:
            continue
        a, b = sample_operand(rng, n_a), sample_operand(rng, n_b)
        if split_of(a, b) == split:
            out.append(task.problem(a, b))
    return out


# ---- the training mixture ---------------------------------------------------------------
class MixtureStream:
    """Endless, resumable batches: each row comes from the newest source with probability
    `newest_prob`, else uniformly from the union of the older sources (with replacement).

    A batch is a pure function of (seed, number of sources, batch index), so the state is just
    the index and a resumed stream repeats an uninterrupted one. With one source, or an empty
    newest or older pool, every row comes from the pool that has data."""

    def __init__(self, sources: Sequence[Sequence[Example]], batch_size: int, max_len: int,
                 pad_id: int, seed: int = 0, newest_prob: float = 0.5, len_bucket: int = 8):
        if not 0.0 <= newest_prob <= 1.0:
            raise UserError(f"self_improve.newest_prob={newest_prob} must be in [0, 1]")
        self.newest = list(sources[-1])
        self.older = [p for src in sources[:-1] for p in src]
        if not self.newest and not self.older:
            raise UserError("MixtureStream: no examples to train on")
        self.batch_size, self.max_len, self.pad_id = batch_size, max_len, pad_id
        self.seed, self.newest_prob, self.len_bucket = seed, newest_prob, len_bucket
        self.num_sources = len(sources)
        self.index = 0

    def get_state(self) -> dict:
        return {"index": self.index}

    def set_state(self, state: dict) -> None:
        self.index = int(state["index"])

    def rows(self, index: int) -> list[Example]:
        """The examples of batch `index`."""
        gen = np.random.default_rng([self.seed, self.num_sources, index])
        p = self.newest_prob if self.older else 1.0
        p = p if self.newest else 0.0
        from_newest = gen.random(self.batch_size) < p
        i_new = gen.integers(max(len(self.newest), 1), size=self.batch_size)
        i_old = gen.integers(max(len(self.older), 1), size=self.batch_size)
        return [self.newest[n] if f else self.older[o]
                for f, n, o in zip(from_newest, i_new, i_old, strict=True)]

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        examples = self.rows(self.index)
        self.index += 1
        seq_len = min(round_up(max(len(e) for e in examples), self.len_bucket), self.max_len)
        return make_batch(examples, seq_len, self.pad_id)


# ---- self-labeling ------------------------------------------------------------------------
def self_label(s: common.Setup, params_list: Sequence, task: AdditionTask,
               problems: Sequence[Problem], cfg: SamplingConfig, key, *,
               vote_threshold: int, filter_length: bool,
               length_slack: int) -> tuple[list[Example], dict]:
    """Labels `problems` with every model, filters, returns (kept examples, stats).

    An output is a candidate only if it finished (emitted the stop token) and parses; votes
    compare the emitted ids. The checker's verdict (`correct`) is used for the reported
    precisions and nothing else. Model m samples with `fold_in(key, m)`."""
    outputs: list[list[Label | None]] = [[] for _ in problems]
    texts: dict[Label, str] = {}
    first: list[bool] = []  # model 0's first output per problem: correct? (precision unfiltered)
    for m, params in enumerate(params_list):
        results = rollouts.sample_and_check(s.sampler, params, task, s.tok, problems, cfg,
                                      jax.random.fold_in(key, m))
        for i, r in enumerate(results):
            ok = r.finished and r.check.answer is not None
            outputs[i // cfg.n].append(r.completion_ids if ok else None)
            texts[r.completion_ids] = r.completion
            if m == 0 and i % cfg.n == 0:
                first.append(r.check.correct)
    labels = majority_vote(outputs, vote_threshold)
    voted = sum(lb is not None for lb in labels)
    checks = [None if lb is None else task.check(p, texts[lb])
              for p, lb in zip(problems, labels, strict=True)]
    if filter_length:
        keep = length_filter([None if c is None else len(c.answer) for c in checks], length_slack)
        labels = [lb if k else None for lb, k in zip(labels, keep, strict=True)]
    prompts = [tuple(r.prompt_ids) for r in results[:: cfg.n]]
    kept = [Example(pr, lb) for pr, lb in zip(prompts, labels, strict=True) if lb is not None]
    right = sum(c.correct for c, lb in zip(checks, labels, strict=True) if lb is not None)
    return kept, _precisions({"labeled": len(problems), "voted": voted, "kept": len(kept),
                              "right": right, "first_right": sum(first)})


def _precisions(counts: dict) -> dict:
    """The counts plus the kept labels' precision and model 0's unfiltered precision."""
    return {**counts, "precision": counts["right"] / max(counts["kept"], 1),
            "precision_unfiltered": counts["first_right"] / max(counts["labeled"], 1)}


def collect_labels(s: common.Setup, params_list: Sequence, task: AdditionTask,
                   inputs: Callable[[int], list[Problem]], cfg: SamplingConfig, seed: int,
                   round_: int, *, wanted: int, max_passes: int,
                   **filters) -> tuple[list[Example], dict]:
    """Labels pass after pass of fresh inputs until `wanted` labels are kept or `max_passes`
    passes are done, as the paper labels until its quota is met: the further a round reaches
    past what the models know, the fewer inputs pass the filters. Pass p draws its inputs with
    `inputs(seed')`, seed' = seed + 100_000 * p + round (pass 0: the round's own), and samples
    from the stream (seed, round, "label", p)."""
    kept: list[Example] = []
    counts: collections.Counter = collections.Counter()
    for p in range(max_passes):
        pass_seed = seed * 1000 + round_ + 100_000 * p
        examples, stats = self_label(s, params_list, task, inputs(pass_seed), cfg,
                                     rng.key(seed, round_, "label", p), **filters)
        kept += examples
        counts.update({k: stats[k] for k in ("labeled", "voted", "kept", "right", "first_right")})
        if len(kept) >= wanted:
            break
    return kept, _precisions({**counts, "passes": p + 1})


def _save_labels(path: str, tok, examples: list[Example], stats: dict) -> None:
    files.write_json(path, {"examples": [[list(e.prompt), [int(t) for t in e.completion]]
                                         for e in examples],
                            "text": [tok.decode(e.completion) for e in examples[:200]],
                            "stats": stats})


def _load_labels(path: str) -> tuple[list[Example], dict]:
    saved = files.read_json(path)
    return [Example(tuple(p), tuple(c)) for p, c in saved["examples"]], saved["stats"]


# ---- the job -------------------------------------------------------------------------------
@gin.configurable(denylist=["workdir"])
@typed
def self_improve(
    workdir: str,
    task: AdditionTask = gin.REQUIRED,
    rounds: int = 3,
    self_label_rounds: bool = True,
    independent_lengths: bool = True,
    equal_length_share: float = 0.0,
    steps_round0: int = 1500,
    steps_per_round: int = 500,
    num_gold: int = 20_000,
    label_inputs: int = 2000,
    labels_per_round: int = 0,
    max_label_passes: int = 1,
    num_models: int = 1,
    samples_per_model: int = 1,
    temperature: float = 0.7,
    vote_threshold: int = 1,
    filter_length: bool = True,
    length_slack: int = 1,
    newest_prob: float = 0.5,
    batch_size: int = 64,
    max_len: int = 32,
    max_new_tokens: int = 24,
    eval_digits: tuple[int, ...] | None = None,
    eval_per_length: int = 200,
    ckpt_every: int = 250,
    log_every: int = 50,
    seed: int = 0,
) -> list[dict]:
    """Runs (or resumes) round 0 and `rounds` self-improvement rounds in `workdir`.

    `self_label_rounds=False` is the baseline: the same rounds, steps and schedule on gold
    1..L digit data only. Returns one summary per round (also in workdir/metrics.jsonl)."""
    if vote_threshold > num_models * samples_per_model:
        raise UserError(
            f"self_improve.vote_threshold={vote_threshold} exceeds the "
            f"{num_models * samples_per_model} outputs per input (num_models x samples_per_model)")
    if not 0.0 <= equal_length_share <= 1.0:
        raise UserError(
            f"self_improve.equal_length_share={equal_length_share} must be in [0, 1]")
    if label_inputs < 1 or max_label_passes < 1:
        raise UserError(f"self_improve.label_inputs={label_inputs} and max_label_passes="
                            f"{max_label_passes} must both be >= 1")
    top = task.max_digits
    eval_digits = tuple(eval_digits or range(1, top + rounds + 2))
    lengths = [steps_round0] + [steps_per_round] * rounds
    ends = list(itertools.accumulate(lengths))
    s = common.build()
    # Every round re-warms: fresh optimizer moments, warmup, then the configured decay over the
    # round (decaying within a round is what makes the model exact in distribution, and
    # exactness at 1..L is what lets it extrapolate to L+1 at all).

    if independent_lengths:
        gold_problems = mixed_length_problems(task, num_gold, seed, "train", top, exact=False)
    else:
        gold_problems = list(itertools.islice(task.problems("train", seed), num_gold))
    gold = [encode_example(s.tok, task.prompt(p), task.target(p)) for p in gold_problems]
    # labeling inputs per pass with two L+r digit operands (all of them without independent lengths)
    n_equal = round(label_inputs * equal_length_share) if independent_lengths else label_inputs
    eval_set = [p for n in eval_digits for p in task.problems_of_length(n, eval_per_length, seed)]
    greedy = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    labeling = SamplingConfig(max_new_tokens=max_new_tokens, n=samples_per_model,
                              temperature=temperature if samples_per_model > 1 else 0.0)

    ckpts = [Checkpointer(os.path.join(workdir, "checkpoints", f"model_{m}"))
             for m in range(num_models)]
    states, extras = [], []
    for m, ckpt in enumerate(ckpts):
        restored = ckpt.restore(s.trainer.abstract_state)
        states.append(restored[0] if restored else s.trainer.init(seed + m))
        extras.append(restored[1] if restored else {"round": 0, "data": {"index": 0}})
    history = read_metrics(workdir)
    done = history[-1]["round"] if history else None
    writer = MetricWriter(workdir, resume_step=done, key="round")
    train_writer = MetricWriter(workdir, resume_step=ckpts[0].latest_step(),
                                filename="train_metrics.jsonl")

    sources: list[list[Example]] = [gold]
    stats: dict = {"labeled": 0, "voted": 0, "kept": 0}
    for r in range(rounds + 1):
        t0 = time.time()
        path = os.path.join(workdir, "labels", f"round_{r:03d}.json")
        if r > 0 and self_label_rounds:
            if os.path.exists(path):
                kept, stats = _load_labels(path)
            else:  # every model is exactly at the end of round r - 1 here (see module doc)
                def inputs(pass_seed: int, r: int = r) -> list[Problem]:
                    equal = task.problems_of_length(top + r, n_equal, pass_seed, split="train")
                    return equal + mixed_length_problems(task, label_inputs - n_equal, pass_seed,
                                                         "train", top + r, exact=True)

                kept, stats = collect_labels(
                    s, [st["params"] for st in states], task, inputs, labeling, seed, r,
                    wanted=labels_per_round, max_passes=max_label_passes,
                    vote_threshold=vote_threshold, filter_length=filter_length,
                    length_slack=length_slack)
                _save_labels(path, s.tok, kept, stats)
            sources.append(kept)
        if done is not None and r <= done:
            continue
        for m in range(num_models):
            data = MixtureStream(sources, batch_size, max_len, s.tok.pad_id, seed + m,
                                 newest_prob)
            if extras[m].get("round") == r:  # resuming inside (or at the end of) this round
                data.set_state(extras[m]["data"])
            elif r > 0:
                states[m] = s.trainer.reset_optimizer(states[m])
            states[m] = fit(s.trainer, states[m], data, lengths[r], ckpt=ckpts[m],
                            step_offset=ends[r] - lengths[r],
                            writer=train_writer if m == 0 else None, extra={"round": r},
                            ckpt_every=ckpt_every, log_every=log_every,
                            desc=f"round {r} model {m}")
            ckpts[m].wait()
        results = rollouts.sample_and_check(s.sampler, states[0]["params"], task, s.tok, eval_set,
                                      greedy)
        rec = writer.write(r, {**rollouts.accuracy_by_difficulty(results), **stats,
                               "steps": ends[r], "seconds": round(time.time() - t0, 1)})
        history.append(rec)
        plots.accuracy_plot(history, os.path.join(workdir, "accuracy.png"), x="round",
                            title=f"self-improvement from {top} digits "
                                  f"({'self-labels' if self_label_rounds else 'gold only'})")
        print(f"round {r}: " + " ".join(f"{k}={v:.3f}" for k, v in rec.items()
                                       if k.startswith("acc/")), flush=True)
    for ckpt in ckpts:
        ckpt.close()
    writer.close()
    train_writer.close()
    print(plots.table(history, x="round", extra=("kept", "precision", "steps", "seconds")))
    jax.effects_barrier()
    return history
