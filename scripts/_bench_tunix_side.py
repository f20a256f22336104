"""The tunix half of scripts/bench_vs_tunix.py; runs under tunix's own interpreter, never ours.

Reads one JSON line (the shape, the prompt rows, the sampling settings), builds tunix's Llama3
decoder (its architecture is ours: RoPE, RMSNorm, SwiGLU, GQA, tied embeddings) with random
weights and tunix's `generate.sampler.Sampler`, warms it up and answers {"ready": ...}. Then each
line {"steps": k} gets k timed calls, answered as {"prefill": [s], "decode": [s], "generate":
[s]} in wall seconds, each also as "<phase>_cpu" in CPU seconds of this process; end of input
ends it. Prefill and decode are tunix's two jitted calls, each timed until
its outputs are ready; generate is the whole `Sampler.__call__` (its host work included).
"""

from __future__ import annotations

import json
import sys

import _bench_common as common


class IdTokenizer:
    """Text is space-separated token ids, so tunix's sampler sees exactly our prompt ids; no BOS
    is added (bos_id 0 is falsy to tunix) and pad is 0, which no prompt contains."""

    def encode(self, text: str, **_) -> list[int]:
        return [int(t) for t in text.split()]

    def decode(self, ids, **_) -> str:
        return " ".join(str(int(t)) for t in ids)

    def bos_id(self) -> int:
        return 0

    def eos_id(self) -> int:
        return -1  # never sampled: every row decodes all its tokens

    def pad_id(self) -> int:
        return 0


def build_model(spec: dict):
    """tunix's Llama3 of the spec's shape, random weights (float32)."""
    import jax
    import numpy as np
    from flax import nnx
    from tunix.models.llama3 import model as llama3

    cfg = llama3.ModelConfig(
        num_layers=spec["layers"], vocab_size=spec["vocab"], embed_dim=spec["d_model"],
        hidden_dim=spec["d_ff"], num_heads=spec["heads"], head_dim=spec["head_dim"],
        num_kv_heads=spec["kv_heads"], rope_theta=10_000, norm_eps=1e-6, weight_tying=True)
    model = llama3.Llama3(cfg, rngs=nnx.Rngs(params=0))
    # tunix initializes the MLP kernels to zeros; random weights everywhere, as on our side.
    params = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(0)
    leaves = [jax.numpy.asarray(rng.normal(0, 0.02, x.shape), x.dtype) for x in leaves]
    nnx.update(model, jax.tree.unflatten(treedef, leaves))
    return model


def build(spec: dict):
    from tunix.generate import sampler as sampler_lib

    cache = sampler_lib.CacheConfig(cache_size=spec["prompt_len"] + spec["gen_len"],
                                    num_layers=spec["layers"], num_kv_heads=spec["kv_heads"],
                                    head_dim=spec["head_dim"])
    return sampler_lib.Sampler(build_model(spec), IdTokenizer(), cache)


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    import jax
    import tunix

    sampler = build(spec)
    phases = common.timed_phases(sampler, {"_compiled_prefill_fn": "prefill",
                                           "_compiled_decode_fn": "decode"})
    texts = [" ".join(map(str, row)) for row in spec["rows"]]
    greedy = spec["temperature"] <= 0
    kwargs = dict(max_generation_steps=spec["gen_len"], max_prompt_length=spec["prompt_len"],
                  return_logprobs=spec["logprobs"], eos_tokens=[IdTokenizer().eos_id()],
                  temperature=spec["temperature"], top_p=None if greedy else 1.0, seed=0)

    def generate() -> None:
        out = sampler(texts, **kwargs)
        assert all(len(t) == spec["gen_len"] for t in out.tokens), [len(t) for t in out.tokens]

    common.time_calls(generate, spec["warmup"])
    print(json.dumps({"ready": True, "tunix": tunix.__file__, "jax": jax.__version__}),
          flush=True)
    for line in sys.stdin:
        for times in phases.values():
            times.clear()
        cpu: list[float] = []
        whole = common.time_calls(generate, json.loads(line)["steps"], cpu)
        print(json.dumps({**phases, "generate": whole, "generate_cpu": cpu}), flush=True)


if __name__ == "__main__":
    main()
