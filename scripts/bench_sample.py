#!/usr/bin/env python3
"""Decode throughput (tokens/s) and fraction of the memory-bandwidth bound of one model size.

  python scripts/bench_sample.py --size small --batch 8 --prompt_len 64 --gen_len 64
  python scripts/bench_sample.py --size 350m --batch 128 --prompt_len 128 --gen_len 128  # GPU

Runs the Sampler the jobs use on random prompts, with no stop token so every row decodes all
gen_len tokens; `--n` samples per prompt (each distinct prompt is prefilled once and its cache
broadcast: --batch counts rows, so batch / n distinct prompts). The jitted prefill, select (the
broadcast of cache rows, n > 1 only) and extend calls are wrapped to time the phases apart (each
blocks on its outputs), and each whole `generate` call is timed too (host work included), in
wall and in CPU seconds of this process (a shared machine inflates wall time, not CPU time);
warm-up calls (the first compiles) are not timed. The prompt pass writes all but the last
prompt token; the decode loop then makes gen_len model calls, each writing one token and
drawing the next, so decode tokens/s = batch * gen_len / decode time. Each decode step must
read every parameter and the whole KV cache (attention scores every slot, masking empty ones), so
  bandwidth fraction = (param bytes + KV-cache bytes) / step time / peak bandwidth.
The sampler holds its weights in the compute dtype (`Sampler.load`), as the jobs do.
"""

from __future__ import annotations

import argparse

import _bench_common as common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_flags(parser)
    parser.add_argument("--prompt_len", type=int, default=128)
    parser.add_argument("--gen_len", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--n", type=int, default=1, help="samples per prompt (divides --batch)")
    args = common.parse(parser)
    if args.batch % args.n:
        parser.error("--n must divide --batch")

    import jax
    import numpy as np
    from flax import nnx

    from jaxrl_reason.models.transformer import Transformer
    from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig

    hw = common.hardware(args)
    cfg = common.model_config(args.size, dtype=hw.dtype, param_dtype=hw.dtype)
    mesh = common.make_mesh(args)
    sampler = Sampler(cfg, stop_tokens=[], mesh=mesh)
    make = lambda: nnx.state(Transformer(cfg, nnx.Rngs(params=0)), nnx.Param)
    with jax.set_mesh(mesh):
        params = jax.jit(make, out_shardings=sampler.params_shardings)()
    load_s = min(sampler.load(params) for _ in range(3))
    distinct = args.batch // args.n
    prompts = np.random.default_rng(0).integers(
        1, cfg.vocab_size, (distinct, args.prompt_len)).tolist()  # generate takes id lists
    sampling = SamplingConfig(max_new_tokens=args.gen_len, temperature=args.temperature,
                              n=args.n)

    phases = common.timed_phases(
        sampler, {"_prefill": "prefill", "_select": "select", "_extend": "decode"})
    generate = lambda: sampler.generate(prompts, sampling)
    common.time_calls(generate, args.warmup)
    for times in phases.values():
        times.clear()
    whole_cpu: list[float] = []
    whole = common.summarize(common.time_calls(generate, args.steps, whole_cpu))
    prefill, decode = common.summarize(phases["prefill"]), common.summarize(phases["decode"])
    decode_cpu = common.summarize(phases["decode_cpu"])
    select = common.summarize(phases["select"]) if phases["select"] else None

    # The sampler pads the batch and prompt to its buckets; those rows and slots are read too.
    b = sampler.batch_size(args.batch)
    slots = sampler.prompt_slots(args.prompt_len) + args.gen_len
    param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
    kv_bytes = (2 * cfg.n_layers * b * cfg.n_kv_heads * slots * cfg.head_dim
                * np.dtype(hw.dtype).itemsize)
    step_s = decode["median_s"] / args.gen_len
    fraction = (param_bytes + kv_bytes) / step_s / (hw.peak_gbps * 1e9 * hw.n_chips)
    tokens_per_s = args.batch * args.gen_len / decode["median_s"]
    summary = {
        "bench": "sample", "size": args.size, "params": cfg.num_params(), "batch": args.batch,
        "prompt_len": args.prompt_len, "gen_len": args.gen_len, "n": args.n, "dtype": hw.dtype,
        "platform": hw.platform, "device_kind": hw.device_kind, "devices": hw.n_devices,
        "mesh": dict(mesh.shape), "steps": args.steps,
        "prefill": prefill, "select": select, "decode": decode, "generate": whole,
        "decode_cpu": decode_cpu, "generate_cpu": common.summarize(whole_cpu),
        "decode_step_s": step_s,
        "prefill_tokens_per_s": distinct * args.prompt_len / prefill["median_s"],
        "load_s": load_s,
        "decode_tokens_per_s": tokens_per_s,
        "decode_tokens_per_cpu_s": args.batch * args.gen_len / decode_cpu["median_s"],
        "generate_tokens_per_s": args.batch * args.gen_len / whole["median_s"],
        "param_bytes": param_bytes, "kv_bytes": kv_bytes,
        "peak_gbps_per_chip": hw.peak_gbps, "peak_source": hw.peak_source,
        "bandwidth_fraction": fraction,
    }
    common.report([
        f"{args.size}: {cfg.num_params() / 1e6:.1f}M params, {hw.dtype}, batch {args.batch} "
        f"({distinct} prompts x {args.n} samples), "
        f"prompt {args.prompt_len} + gen {args.gen_len}, {hw.n_devices} {hw.platform} "
        f"device(s), mesh {dict(mesh.shape)}",
        f"prefill: median {prefill['median_s'] * 1e3:.1f} ms   "
        + (f"select: median {select['median_s'] * 1e3:.1f} ms   " if select else "")
        + f"decode: median {decode['median_s'] * 1e3:.1f} ms ({step_s * 1e3:.2f} ms/step)   "
        f"whole generate: median {whole['median_s'] * 1e3:.1f} ms, over {args.steps} calls",
        f"decode tokens/s: {tokens_per_s:,.0f}   bandwidth: {fraction:.1%} of {hw.peak_gbps:.4g} "
        f"GB/s x {hw.n_chips} ({hw.peak_source}); {(param_bytes + kv_bytes) / 1e6:.1f} MB/step",
        f"decode tokens per CPU second (this process, all threads): "
        f"{summary['decode_tokens_per_cpu_s']:,.0f}",
        f"weights refresh (Sampler.load): {load_s * 1e3:.1f} ms",
    ], summary)


if __name__ == "__main__":
    main()
