#!/usr/bin/env python3
"""Seconds and peak host memory of importing a Hugging Face checkpoint onto the mesh.

  python scripts/bench_hf_load.py --dir /tmp/llama1b --write        # synthesize it once
  python scripts/bench_hf_load.py --dir /tmp/llama1b --param_dtype bfloat16
  python scripts/bench_hf_load.py --dir /tmp/llama1b --devices 8 --fsdp 8   # 8 fake devices

--write makes a synthetic checkpoint of Llama-3.2-1B's shape (1.24B parameters, bf16, random
values, written a shard at a time in 1 GiB files with an index, as the Hub shards them). The
load then runs in a fresh process: config mapping, memory-mapped reads of each device's block,
conversion to --param_dtype, `jax.make_array_from_callback` onto the mesh. On CPU the "devices"
live in host memory, so the loaded model itself is part of the peak RSS: the figure to read is
peak RSS minus (RSS before the load + the model's bytes), the transient the loader adds on top
of the model it leaves behind (a read-it-all-then-place loader adds about one model).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

LLAMA_3P2_1B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
    "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 64, "hidden_act": "silu", "rms_norm_eps": 1e-05,
    "max_position_embeddings": 131072, "rope_theta": 500000.0, "tie_word_embeddings": True,
    "vocab_size": 128256, "torch_dtype": "bfloat16",
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}}


def write(directory: str) -> None:
    """The synthetic checkpoint: our name map gives every tensor's HF name and shape."""
    import ml_dtypes
    import numpy as np
    from safetensors.numpy import save_file

    from jaxrl_reason.models.hf.config import model_fields
    from jaxrl_reason.models.hf.weights import name_map
    from jaxrl_reason.models.transformer import ModelConfig

    cfg = ModelConfig(**model_fields(LLAMA_3P2_1B))
    tensors = sorted(name_map(cfg, "llama").values(), key=lambda v: v[0])
    rng = np.random.default_rng(0)
    os.makedirs(directory, exist_ok=True)
    shards, shard, size = [], {}, 0
    for name, layout in tensors:
        array = (rng.standard_normal(layout.theirs, np.float32) * 0.02).astype(ml_dtypes.bfloat16)
        if size and size + array.nbytes > 1 << 30:
            shards.append(shard)
            shard, size = {}, 0
        shard[name], size = array, size + array.nbytes
    shards.append(shard)
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(directory, file), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(shard, file)
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(LLAMA_3P2_1B, f)


def status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmRSS, RssAnon, RssFile)."""
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    return kb / 1024


class PeakAnon:
    """Peak anonymous (heap) memory, sampled every 10 ms: unlike the RSS peak it leaves out the
    checkpoint's memory-mapped file pages, which are page cache the kernel can drop."""

    def __init__(self):
        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, status_mib("RssAnon"))
            time.sleep(0.01)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, status_mib("RssAnon"))


def load(args) -> None:
    import jax

    from jaxrl_reason import parallel
    from jaxrl_reason.models.hf import HFCheckpoint
    from jaxrl_reason.models.hf.weights import abstract_params

    ckpt = HFCheckpoint(args.dir)
    import dataclasses

    cfg = dataclasses.replace(ckpt.model_config(), param_dtype=args.param_dtype)
    mesh = parallel.make_mesh(data=1, fsdp=args.fsdp, tensor=args.tensor)
    shardings = parallel.state_shardings(abstract_params(cfg), mesh)
    before, anon_before = status_mib("VmRSS"), status_mib("RssAnon")
    anon = PeakAnon()
    t0 = time.perf_counter()
    params = jax.block_until_ready(ckpt.load_params(cfg, shardings))
    seconds = time.perf_counter() - t0
    peak_anon = anon.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model = sum(x.nbytes for x in jax.tree.leaves(params)) / 2**20
    largest = max(x.nbytes for x in jax.tree.leaves(params)) / 2**20
    n = sum(x.size for x in jax.tree.leaves(params))
    print(json.dumps({
        "bench": "hf_load", "params": n, "param_dtype": args.param_dtype,
        "devices": len(jax.devices()), "mesh": dict(mesh.shape), "seconds": round(seconds, 2),
        "model_mib": round(model), "largest_tensor_mib": round(largest),
        "rss_before_mib": round(before), "peak_rss_mib": round(peak),
        "peak_anon_over_model_mib": round(peak_anon - anon_before - model),
        "load_avg_1min": os.getloadavg()[0]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--write", action="store_true", help="synthesize the checkpoint first")
    parser.add_argument("--param_dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--devices", type=int, default=1, help="fake CPU devices")
    parser.add_argument("--fsdp", type=int, default=1)
    parser.add_argument("--tensor", type=int, default=1)
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        return load(args)
    if args.write:
        write(args.dir)
    env = dict(os.environ)
    if args.devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
        env.setdefault("NPROC", "16")
    argv = [a for a in sys.argv[1:] if a != "--write"]
    subprocess.run([sys.executable, __file__, *argv, "--_child"], env=env, check=True)


if __name__ == "__main__":
    main()
