#!/usr/bin/env python3
"""CPU cost of drawing one token per row, the sampler's draw against jax.random.categorical.

  python scripts/bench_draw.py --batch 64 --vocab 8192

Each variant runs --steps draws over [batch, vocab] log-probs inside one jitted fori_loop (a
fresh fold_in key per step, as the sampler's decode loop does), so dispatch is not timed:
  gumbel       jax.random.gumbel alone (what any exact categorical draw must generate; on CPU
               jax hashes its counters in a rolled loop of 5 iterations);
  unrolled     sampling.distribution.gumbel: the same noise, bit for bit, its hash unrolled;
  categorical  jax.random.categorical (argmax of log-probs + Gumbel noise), what tunix calls;
  draw         sampling.distribution.draw: the same argmax as a max and a min over indices,
               over the unrolled noise;
  greedy       draw with greedy=True (argmax of the log-probs, no noise).
Prints the best of --repeats calls in wall and CPU seconds of this process per --steps draws,
whether `draw` picked exactly categorical's tokens and whether the unrolled noise is
jax.random.gumbel's bit for bit (over all --steps keys), and the whole result as one JSON line.
"""

from __future__ import annotations

import argparse

import _bench_common as common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=64, help="draws per timed call")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (best is kept)")
    args = parser.parse_args()
    if min(args.batch, args.vocab, args.steps, args.repeats) < 1:
        parser.error("--batch, --vocab, --steps and --repeats must be >= 1")

    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxrl_reason.sampling.distribution import draw, gumbel

    shape = (args.batch, args.vocab)
    variants = {
        "gumbel": lambda k, lp: jax.random.gumbel(k, shape).max(axis=-1) > 0,
        "unrolled": lambda k, lp: gumbel(k, shape).max(axis=-1) > 0,
        "categorical": lambda k, lp: jax.random.categorical(k, lp, axis=-1),
        "draw": lambda k, lp: draw(k, lp, False)[0],
        "greedy": lambda k, lp: draw(k, lp, True)[0],
    }
    logp = jax.nn.log_softmax(2.0 * jax.random.normal(jax.random.key(1), shape), axis=-1)
    key = jax.random.key(0)

    def loop(fn):
        def run(logp, key):
            def body(i, toks):  # each step reads the tokens so far: none is hoisted
                lp = logp + 0.0 * toks[:, :1]
                return toks.at[:, i].set(fn(jax.random.fold_in(key, i), lp).astype(jnp.int32))
            return jax.lax.fori_loop(0, args.steps, body, jnp.zeros((args.batch, args.steps),
                                                                     jnp.int32))
        return jax.jit(run)

    results, tokens = {}, {}
    for name, fn in variants.items():
        run = loop(fn)
        tokens[name] = np.asarray(run(logp, key))  # compiles
        cpu: list[float] = []
        call = lambda run=run: jax.block_until_ready(run(logp, key))
        wall = common.time_calls(call, args.repeats, cpu)
        results[name] = {"wall_s": min(wall), "cpu_s": min(cpu)}
    same = bool(np.array_equal(tokens["draw"], tokens["categorical"]))
    noise = jax.jit(lambda k: jax.vmap(
        lambda i: jnp.stack([jax.random.gumbel(jax.random.fold_in(k, i), shape),
                             gumbel(jax.random.fold_in(k, i), shape)]))(jnp.arange(args.steps)))
    pairs = np.asarray(noise(key)).view(np.uint32)
    same_noise = bool(np.array_equal(pairs[:, 0], pairs[:, 1]))
    lines = [f"[{args.batch}, {args.vocab}] log-probs, {args.steps} draws per call, best of "
             f"{args.repeats}"]
    lines += [f"{name:12s} wall {r['wall_s'] * 1e3:8.1f} ms   CPU {r['cpu_s'] * 1e3:8.1f} ms"
              for name, r in results.items()]
    lines.append(f"draw == categorical, token for token: {same}")
    lines.append(f"unrolled == jax.random.gumbel, bit for bit: {same_noise}")
    common.report(lines, {"bench": "draw", "batch": args.batch, "vocab": args.vocab,
                          "steps": args.steps, "variants": results, "same_tokens": same,
                          "same_noise": same_noise})


if __name__ == "__main__":
    main()
