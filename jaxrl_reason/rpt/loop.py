"""The RPT job: from a text corpus to RPT against plain next-token training at equal compute.

Stages, each in its own folder of the workdir and each resumed where it stopped:
  tokenizer.model   a sentencepiece BPE trained on the train documents;
  proxy/, base/     next-token pre-training of a small proxy and of the policy's base;
  positions/        held-out and training positions with the proxy's top-16 entropy; only
                    those above `min_entropy` are kept (RPT's hard positions);
  sft/              the reason-then-commit format taught on the corpus itself (all entropies);
  rl/               RPT: GRPO on the prefix-match reward (the `rl` job, `rl.*` and
                    `rl_learner.*` in gin), its decisions on the validation positions;
  ntp/              the base trained on next tokens for the FLOPs of sft + rl;
  report.json       next-token accuracy of base, ntp, sft and rpt on the test positions in
                    the paper's entropy splits (> 0.5 / 1.0 / 1.5), with standard errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random

import gin
import jax
import numpy as np

from jaxrl_reason import cli, common, files, rollouts
from jaxrl_reason.data.batching import ExampleStream, encode_example
from jaxrl_reason.data.gsm8k import resolve_manual_dir
from jaxrl_reason.errors import UserError, require, typed
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.rewards.prefix_match import prefix_match
from jaxrl_reason.rl.learner import LearnerConfig
from jaxrl_reason.rl.loop import rl
from jaxrl_reason.rl.validation import mean_and_se
from jaxrl_reason.rpt import corpus as corpus_lib
from jaxrl_reason.rpt import plots
from jaxrl_reason.rpt.entropy import next_token_stats
from jaxrl_reason.rpt.task import ENTROPY_SPLITS, RPTTask, position_record, read_positions
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.tokenizers import SentencePieceTokenizer
from jaxrl_reason.training.checkpoints import Checkpointer, read_params
from jaxrl_reason.training.loop import fit
from jaxrl_reason.training.metrics import MetricWriter
from jaxrl_reason.training.optim import make_optimizer
from jaxrl_reason.training.trainer import Trainer

PRETRAIN_OPTIMIZER = {"learning_rate": 3e-3, "warmup_steps": 50, "schedule": "cosine",
                      "weight_decay": 0.01}
SFT_OPTIMIZER = {"learning_rate": 1e-3, "warmup_steps": 20, "schedule": "cosine",
                 "weight_decay": 0.0}


def param_count(trainer: Trainer) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(trainer.abstract_state["params"]))


def train_lm(directory: str, trainer: Trainer, examples, steps: int, batch_size: int,
             max_len: int, seed: int, init, desc: str, pad_id: int) -> tuple[object, dict]:
    """Trains `steps` next-token steps on `examples` from `init()` (params) into `directory`,
    resuming from its checkpoints; returns (params, {steps, tokens: trained tokens})."""
    done = files.path(directory) / "done.json"
    if done.exists():
        summary = files.read_json(done)
        if summary["steps"] != steps:  # a changed config must not reuse a finished stage
            raise UserError(f"{directory} was trained for {summary['steps']} steps, this "
                            f"config asks {steps}: use a new workdir")
        params, _ = read_params(os.path.join(directory, "checkpoints"),
                                trainer.abstract_state["params"])
        return params, summary
    data = ExampleStream(examples, batch_size, max_len, pad_id, seed)
    ckpt = Checkpointer(os.path.join(directory, "checkpoints"), max_to_keep=1)
    restored = ckpt.restore(trainer.abstract_state)
    if restored is not None:
        state, extra = restored
        data.set_state(extra["data"])
    else:
        state = trainer.reset_optimizer({"params": init()})
    writer = MetricWriter(directory, resume_step=ckpt.latest_step())
    state = fit(trainer, state, data, steps, ckpt=ckpt, writer=writer,
                ckpt_every=max(1, steps // 4), log_every=max(1, steps // 20), desc=desc)
    ckpt.close()
    writer.close()
    mean_len = float(np.mean([len(e) for e in examples]))
    summary = {"steps": steps, "tokens": steps * batch_size * mean_len}
    files.write_json(done, summary)
    return state["params"], summary


def candidates(docs_ids, count: int, min_context: int, seed: int, split: str
               ) -> list[tuple[int, int]]:
    """`count` distinct (document, position) pairs drawn uniformly from those with at least
    `min_context` tokens before them (all of them when fewer)."""
    pool = [(d, t) for d, ids in enumerate(docs_ids) for t in range(min_context, len(ids))]
    random.Random(f"rpt-positions-{seed}-{split}").shuffle(pool)
    return pool[:count]


def make_positions(tok, docs_ids, picks, context_tokens: int, truth_tokens: int,
                   tail_tokens: int = 3) -> list[tuple[list[int], dict]]:
    """(context ids, record without entropy) for each pick whose next token is whole text."""
    out = []
    for d, t in picks:
        ids = docs_ids[d]
        truth = tok.token_bytes(ids[t:t + truth_tokens])
        try:
            first = truth[0].decode("utf-8")
        except UnicodeDecodeError:
            continue  # part of a character: no prediction can end there
        if not first or "}" in first:
            continue
        context = ids[max(0, t - context_tokens):t]
        out.append((context, position_record(tok.decode(context), tok.decode(
            context[-tail_tokens:]), truth, 0.0, d, t)))
    return out


def token_text(tok, token_id: int) -> str:
    """The text token `token_id` adds in running text (a word-start piece with its space, which
    `tok.decode([token_id])` drops); "" for a control id or part of a character."""
    try:
        return tok.token_bytes([token_id])[0].decode("utf-8")
    except UnicodeDecodeError:
        return ""


def raw_accuracy(trainer: Trainer, params, tok, problems, context_tokens: int) -> list[bool]:
    """Next-token accuracy of a model read directly: its most likely token after the context
    (as the format's prompt tokenizes it), scored by the same prefix-match as a commit."""
    contexts = [tok.encode(p.question)[-context_tokens:] for p in problems]
    _, top = next_token_stats(trainer, params, contexts, tok.bos_id, tok.pad_id)
    return [prefix_match(token_text(tok, int(i)), p.meta["truth"])
            for i, p in zip(top, problems, strict=True)]


def split_report(problems, correct) -> dict[str, float]:
    """Accuracy (and its SE, count) on every entropy split: positions above its threshold."""
    out = {}
    for name, threshold in ENTROPY_SPLITS.items():
        vals = [float(c) for p, c in zip(problems, correct, strict=True)
                if p.meta["entropy"] > threshold]
        if vals:
            out[name], out[f"{name}_se"] = mean_and_se(vals)
            out[f"{name}_n"] = len(vals)
    return out


def rl_flops(rl_dir: str, n_params: int, prompt_tokens: float, cfg: LearnerConfig) -> float:
    """Training FLOPs of the RL stage from its metrics: 2N per sampled token (prompt and
    completion), 2N per token for pi_old's log-probs (the learner scores them every step, mu =
    1 too), 6N per trained token per pass (mu passes). With dynamic sampling an upper bound:
    every round counts as a full one and every sampled row as trained."""
    total = 0.0
    for r in files.read_jsonl(files.path(rl_dir) / "metrics.jsonl"):
        if "rollout_tokens" not in r:
            continue
        rows = cfg.prompts_per_step * cfg.group_size * r["sampling_rounds"]
        tokens = r["rollout_tokens"] + rows * prompt_tokens
        total += n_params * tokens * (2 + 2 + 6 * cfg.num_iterations)
    return total


@gin.configurable(denylist=["workdir"])
@typed
def rpt(
    workdir: str,
    corpus: str | None = None,
    seed: int = 0,
    vocab_size: int = 1024,
    window: int = 128,
    pretrain_batch: int = 32,
    proxy_model: dict | None = None,
    proxy_steps: int = 1000,
    base_steps: int = 1000,
    pretrain_optimizer: dict | None = None,
    context_tokens: int = 48,
    truth_tokens: int = 8,
    min_context: int = 8,
    min_entropy: float = 0.5,
    train_candidates: int = 30_000,
    eval_candidates: int = 3_000,
    valid_positions: int = 200,
    test_positions: int = 1_000,
    sft_steps: int = 600,
    sft_batch: int = 32,
    sft_optimizer: dict | None = None,
    max_new_tokens: int = 24,
) -> dict:
    """Runs (or resumes) every stage on `corpus` (a .jsonl or text file; None: GSM8K's
    train.jsonl from the shared data folder) and returns the report. The policy's shape is
    ModelConfig's gin bindings, the proxy's those with `proxy_model`'s fields over them."""
    for name, value in (("window", window), ("pretrain_batch", pretrain_batch),
                        ("proxy_steps", proxy_steps), ("base_steps", base_steps),
                        ("context_tokens", context_tokens), ("truth_tokens", truth_tokens),
                        ("sft_steps", sft_steps), ("sft_batch", sft_batch),
                        ("test_positions", test_positions), ("valid_positions", valid_positions)):
        require(value >= 1, f"rpt.{name}", value, "must be >= 1")
    require(min_context >= 1, "rpt.min_context", min_context, "must be >= 1")
    corpus = corpus or str(resolve_manual_dir(None) / "train.jsonl")
    docs = corpus_lib.split_documents(corpus_lib.read_documents(corpus))
    timer = common.Timer(workdir)
    tok_path = os.path.join(workdir, "tokenizer.model")
    with timer.stage("tokenizer"):
        tok = (SentencePieceTokenizer(tok_path) if files.path(tok_path).exists() else
               SentencePieceTokenizer.train(docs["train"], tok_path, vocab_size))
    positions_dir = os.path.join(workdir, "positions")
    with gin.unlock_config():
        gin.bind_parameter("SentencePieceTokenizer.model_path", os.path.abspath(tok_path))
        gin.bind_parameter("RPTTask.positions", os.path.abspath(positions_dir))
        gin.bind_parameter("rl.seed", seed)  # rl/config.gin then holds the seed the stage ran
    config = gin.config_str()
    s = common.build()
    require(s.model_cfg.max_len >= window, "ModelConfig.max_len", s.model_cfg.max_len,
            f"must be >= rpt.window ({window})")
    ids = {k: [tok.encode(d) for d in v] for k, v in docs.items()}
    examples = corpus_lib.windows(ids["train"], window, tok.bos_id, tok.eos_id)
    mesh, banned = s.trainer.mesh, s.trainer.banned_ids

    def lm_trainer(cfg: ModelConfig, optimizer: dict) -> Trainer:
        return Trainer(cfg, make_optimizer(**optimizer), mesh, banned_ids=banned)

    pre_opt = {**PRETRAIN_OPTIMIZER, **(pretrain_optimizer or {})}
    proxy_cfg = dataclasses.replace(s.model_cfg, **(proxy_model or {"d_model": 64,
                                                                    "n_layers": 2,
                                                                    "head_dim": 16,
                                                                    "d_ff": 256}))
    proxy = lm_trainer(proxy_cfg, pre_opt)
    base = lm_trainer(s.model_cfg, pre_opt)
    with timer.stage("proxy"):
        proxy_params, _ = train_lm(os.path.join(workdir, "proxy"), proxy, examples, proxy_steps,
                                   pretrain_batch, window, seed, lambda: proxy.init_params(seed),
                                   "proxy", tok.pad_id)
    with timer.stage("base"):
        base_params, _ = train_lm(os.path.join(workdir, "base"), base, examples, base_steps,
                                  pretrain_batch, window, seed,
                                  lambda: base.init_params(seed + 1), "base", tok.pad_id)

    with timer.stage("positions"):
        if not (files.path(positions_dir) / "done.json").exists():
            prep = {}
            for split, count, keep in (("train", train_candidates, None),
                                       ("valid", eval_candidates, valid_positions),
                                       ("test", eval_candidates, test_positions)):
                found = make_positions(tok, ids[split], candidates(
                    ids[split], count, min_context, seed, split), context_tokens, truth_tokens)
                require(len(found) > 0, "rpt.min_context", min_context,
                        f"leaves no candidate position in the {split} documents")
                ent, _ = next_token_stats(proxy, proxy_params, [c for c, _ in found],
                                          tok.bos_id, tok.pad_id)
                rows = [{**r, "entropy": round(float(e), 4)} for (_, r), e in zip(found, ent,
                                                                               strict=True)]
                if split == "train":  # the format SFT reads every entropy
                    files.write_jsonl(os.path.join(positions_dir, "all_train.jsonl"), rows)
                hard = [r for r in rows if r["entropy"] > min_entropy][:keep]
                files.write_jsonl(os.path.join(positions_dir, f"{split}.jsonl"), hard)
                prep[split] = {"candidates": len(rows), "kept": len(hard),
                               "entropy_mean": float(np.mean(ent))}
            files.write_json(os.path.join(positions_dir, "done.json"), prep)
    task = RPTTask(positions_dir)
    for split in ("train", "valid", "test"):
        require(len(task.split(split)) >= 1, "rpt.min_entropy", min_entropy,
                f"leaves no {split} position: lower it or give a larger corpus")

    sft_trainer = lm_trainer(s.model_cfg, {**SFT_OPTIMIZER, **(sft_optimizer or {})})
    sft_dir = os.path.join(workdir, "sft")
    with timer.stage("sft"):
        sft_examples = [encode_example(tok, task.prompt(p), task.target(p)) for p in
                        read_positions(os.path.join(positions_dir, "all_train.jsonl"))]
        _, sft_run = train_lm(sft_dir, sft_trainer, sft_examples, sft_steps, sft_batch,
                              s.model_cfg.max_len, seed, lambda: base_params, "sft", tok.pad_id)
        cli.write_operative_config(sft_dir, config)

    rl_dir = os.path.join(workdir, "rl")
    with timer.stage("rl"):
        cli.write_operative_config(rl_dir, config)
        rl(rl_dir, policy_dir=sft_dir, seed=seed)
    n = param_count(base)
    prompt_tokens = float(np.mean([len(ex.prompt) for ex in sft_examples]))
    spent = 6 * n * sft_run["tokens"] + rl_flops(rl_dir, n, prompt_tokens, LearnerConfig())
    ntp_tokens_per_step = pretrain_batch * float(np.mean([len(e) for e in examples]))
    ntp_steps = max(1, round(spent / (6 * n * ntp_tokens_per_step)))
    with timer.stage("ntp"):
        ntp = lm_trainer(s.model_cfg, pre_opt)
        ntp_params, _ = train_lm(os.path.join(workdir, "ntp"), ntp, examples, ntp_steps,
                                 pretrain_batch, window, seed + 2, lambda: base_params, "ntp",
                                 tok.pad_id)

    with timer.stage("eval"):
        test = task.split("test")
        rl_params, _ = common.restore_params(s, rl_dir)
        sft_params, _ = read_params(os.path.join(sft_dir, "checkpoints"),
                                    s.trainer.abstract_state["params"])
        greedy = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)

        def committed(params) -> list[bool]:
            return [r.check.correct for r in rollouts.sample_and_check(
                s.sampler, params, task, tok, test, greedy)]

        report = {
            "models": {
                "base": split_report(test, raw_accuracy(base, base_params, tok, test,
                                                        context_tokens)),
                "ntp": split_report(test, raw_accuracy(base, ntp_params, tok, test,
                                                       context_tokens)),
                "sft": split_report(test, committed(sft_params)),
                "rpt": split_report(test, committed(rl_params)),
            },
            "flops": {"sft_plus_rl": spent, "ntp": 6 * n * ntp_tokens_per_step * ntp_steps,
                      "ntp_steps": ntp_steps, "params": n},
            "positions": files.read_json(os.path.join(positions_dir, "done.json")),
        }
    report["seconds"] = timer.seconds
    files.write_json(os.path.join(workdir, "report.json"), report)
    plots.report_plot(report, files.read_jsonl(os.path.join(rl_dir, "metrics.jsonl")),
                      os.path.join(workdir, "rpt.png"))
    print(json.dumps(report["models"]))
    return report
