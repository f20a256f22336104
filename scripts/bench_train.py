#!/usr/bin/env python3
"""Train-step throughput (tokens/s) and MFU of one named model size.

  python scripts/bench_train.py --size small --batch 8 --seq_len 256 --steps 5
  python scripts/bench_train.py --size 350m --batch 16 --seq_len 1024 --steps 20  # GPU: bf16

One step = forward, backward and AdamW update on [batch, seq_len] random tokens, through the
same Trainer the jobs use. Warm-up steps (the first compiles) are not timed; each timed step
blocks on the new state; wall and CPU seconds of this process are recorded (a shared machine
inflates wall time, not CPU time). Model FLOPs per token = 6 * N + 12 * L * T * H * D: N counts
every parameter that enters a matmul (a tied embedding once, as the output head; a lookup costs
nothing), and the attention term counts the full T x T scores and mix, because the model
computes all of them and masks afterwards (no causal halving). Remat recomputation is not
counted (MFU, not hardware FLOPs utilization).
"""

from __future__ import annotations

import argparse

import _bench_common as common


def flops_per_token(cfg, seq_len: int) -> float:
    n = cfg.num_params() - (0 if cfg.tie_embeddings else cfg.vocab_size * cfg.d_model)
    return 6 * n + 12 * cfg.n_layers * seq_len * cfg.n_heads * cfg.head_dim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_flags(parser)
    parser.add_argument("--seq_len", type=int, default=256)
    parser.add_argument("--grad_accum", type=int, default=1)
    parser.add_argument("--remat", action="store_true", help="rematerialize each block")
    args = common.parse(parser)

    import jax
    import numpy as np

    from jaxrl_reason.training.optim import make_optimizer
    from jaxrl_reason.training.trainer import Trainer

    hw = common.hardware(args)
    cfg = common.model_config(args.size, dtype=hw.dtype, remat=args.remat)
    mesh = common.make_mesh(args)
    trainer = Trainer(cfg, make_optimizer(), mesh, grad_accum=args.grad_accum)
    state = trainer.init(seed=0)
    shape = (args.batch, args.seq_len)
    batch = {"tokens": np.random.default_rng(0).integers(1, cfg.vocab_size, shape, np.int32),
             "input_mask": np.ones(shape, bool),
             "positions": np.broadcast_to(np.arange(args.seq_len, dtype=np.int32), shape),
             "loss_mask": np.ones(shape, np.int32)}

    def step() -> None:
        nonlocal state
        state, metrics = trainer.train_step(state, batch, 1e-4)
        jax.block_until_ready((state, metrics))

    common.time_calls(step, args.warmup)
    cpu_times: list[float] = []
    stats = common.summarize(common.time_calls(step, args.steps, cpu_times))
    cpu = common.summarize(cpu_times)

    tokens = args.batch * args.seq_len
    tokens_per_s = tokens / stats["median_s"]
    flops = flops_per_token(cfg, args.seq_len) * tokens
    mfu = flops / stats["median_s"] / (hw.peak_tflops * 1e12 * hw.n_chips)
    summary = {
        "bench": "train", "size": args.size, "params": cfg.num_params(), "batch": args.batch,
        "seq_len": args.seq_len, "grad_accum": args.grad_accum, "remat": args.remat,
        "dtype": hw.dtype, "platform": hw.platform, "device_kind": hw.device_kind,
        "devices": hw.n_devices, "mesh": dict(mesh.shape), "steps": args.steps, **stats,
        "tokens_per_s": tokens_per_s, "cpu": cpu, "tokens_per_cpu_s": tokens / cpu["median_s"],
        "tflops_per_s": flops / stats["median_s"] / 1e12,
        "peak_tflops_per_chip": hw.peak_tflops, "peak_source": hw.peak_source, "mfu": mfu,
    }
    common.report([
        f"{args.size}: {cfg.num_params() / 1e6:.1f}M params, {hw.dtype}, batch {args.batch} x "
        f"seq {args.seq_len}, {hw.n_devices} {hw.platform} device(s), mesh {dict(mesh.shape)}",
        f"step: median {stats['median_s'] * 1e3:.1f} ms, mean {stats['mean_s'] * 1e3:.1f} ms "
        f"over {args.steps} steps",
        f"tokens/s: {tokens_per_s:,.0f}   MFU: {mfu:.1%} of {hw.peak_tflops:.3g} TFLOP/s x "
        f"{hw.n_chips} ({hw.peak_source})",
        f"tokens per CPU second (this process, all threads): {summary['tokens_per_cpu_s']:,.0f}",
    ], summary)


if __name__ == "__main__":
    main()
