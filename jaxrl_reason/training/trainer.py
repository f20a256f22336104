"""Train state and the jitted, sharded steps; knows no algorithm.

The state is a plain pytree {params, opt_state, step} (+ ref_params: a frozen reference policy,
in its own dtype and sharded like the policy, when the trainer has one). Shardings come from the
params' logical axes, so the same step runs on 1 CPU or a pod. Every jitted function is built
once per Trainer; the learning rate is an argument, so one compiled step serves every phase.

A batch is a pytree of [B, ...] arrays whose model inputs (`tokens`, `positions`, `input_mask`,
`loss_mask`) read by name: the SFT dict of `data.batching` or a typed batch such as
`rl.batch.RLBatch`. The loss is a function of (Forward, batch) handed to the trainer
(`training.losses.sft_loss` by default).

Gradient accumulation scans over micro-batches inside the step. Micro-batch j takes rows
j, j + A, j + 2A, ... (A = grad_accum), so each one is spread over every device; losses return
sums and counts, and the step divides by the global count once (`training.losses`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from jaxrl_reason import parallel
from jaxrl_reason.errors import check_dataclass, require
from jaxrl_reason.models.transformer import ModelConfig, Transformer
from jaxrl_reason.sampling.distribution import banned_mask
from jaxrl_reason.training.losses import Forward, LossFn, sft_loss
from jaxrl_reason.training.optim import Optimizer

State = dict[str, Any]


@gin.configurable(denylist=["model_cfg", "optimizer", "mesh", "loss", "banned_ids"])
@dataclasses.dataclass
class Trainer:
    """Owns the compiled steps for one (model, optimizer, mesh, loss).

    `banned_ids` are the ids the sampler never generates: `logprobs` excludes them as the
    sampler does, so trainer and sampler log-probs agree."""

    model_cfg: ModelConfig
    optimizer: Optimizer
    mesh: Mesh
    loss: LossFn = sft_loss
    grad_accum: int = 1
    reference: bool = False
    reference_dtype: str | None = None
    banned_ids: tuple[int, ...] = ()

    def __post_init__(self):
        check_dataclass(self)
        require(self.grad_accum >= 1, "Trainer.grad_accum", self.grad_accum, "must be >= 1")
        self.ref_dtype = jnp.dtype(self.reference_dtype or self.model_cfg.param_dtype)
        abstract = nnx.eval_shape(lambda: Transformer(self.model_cfg, nnx.Rngs(0)))
        self.graphdef, abstract_params = nnx.split(abstract, nnx.Param)
        abstract_state = jax.eval_shape(self._fresh_state, abstract_params)
        self.state_shardings = parallel.state_shardings(abstract_state, self.mesh)
        self.params_shardings = self.state_shardings["params"]
        self.abstract_state = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            abstract_state,
            self.state_shardings,
        )
        self._data = parallel.batch_sharding(self.mesh)
        self._repl = parallel.replicated(self.mesh)
        self._init = jax.jit(self._init_fn, out_shardings=self.state_shardings)
        self._init_params = jax.jit(self._init_params_fn, out_shardings=self.params_shardings)
        self._reset = jax.jit(self._fresh_state, out_shardings=self.state_shardings)
        self._train = jax.jit(self._train_step, out_shardings=(self.state_shardings, self._repl),
                              donate_argnums=0)
        self._eval = jax.jit(self._eval_step, out_shardings=self._repl)
        self._logprobs = jax.jit(self._logprobs_fn, static_argnames=("top_k", "top_p"),
                                 out_shardings=self._data)
        self._values = jax.jit(self._values_fn, out_shardings=self._data)

    # ---- state --------------------------------------------------------------------------------
    def _fresh_state(self, params, ref_params=None) -> State:
        state = {"params": params, "opt_state": self.optimizer.tx.init(params),
                 "step": jnp.zeros((), jnp.int32)}
        if self.reference:
            ref = params if ref_params is None else ref_params
            state["ref_params"] = jax.tree.map(lambda x: x.astype(self.ref_dtype), ref)
        return state

    def _init_params_fn(self, key):
        return nnx.state(Transformer(self.model_cfg, nnx.Rngs(params=key)), nnx.Param)

    def _init_fn(self, key):
        return self._fresh_state(self._init_params_fn(key))

    def init(self, seed: int) -> State:
        """A fresh state, created directly in its sharded layout (no host-side full copy)."""
        with jax.set_mesh(self.mesh):
            return self._init(jax.random.key(seed))

    def init_params(self, seed: int):
        """Fresh parameters only (e.g. to fill leaves a checkpoint lacks)."""
        with jax.set_mesh(self.mesh):
            return self._init_params(jax.random.key(seed))

    def reset_optimizer(self, state: State, params=None) -> State:
        """Fresh optimizer moments and step 0 around `params` (default: the state's own, e.g.
        the base model's for STaR); a reference, if any, is kept."""
        params = state["params"] if params is None else params
        with jax.set_mesh(self.mesh):
            return self._reset(params, state.get("ref_params"))

    def reset_reference(self, state: State) -> State:
        """The reference becomes a copy of the current policy (ProRL's hard reset)."""
        require(self.reference, "Trainer.reference", self.reference, "must be True to reset it")
        with jax.set_mesh(self.mesh):
            ref = jax.jit(lambda p: jax.tree.map(lambda x: x.astype(self.ref_dtype), p),
                          out_shardings=self.state_shardings["ref_params"])(state["params"])
        return {**state, "ref_params": ref}

    # ---- steps --------------------------------------------------------------------------------
    def _forward(self, params, batch) -> Forward:
        model = nnx.merge(self.graphdef, params)
        logits, values = model(batch["tokens"], batch["positions"], batch["input_mask"])
        banned = banned_mask(self.model_cfg.vocab_size, self.banned_ids) if self.banned_ids \
            else None
        return Forward(batch["tokens"], logits, values, banned)

    def _sums(self, params, batch):
        total, count, metrics = self.loss(self._forward(params, batch), batch)
        return total, (count, metrics)

    def _micro_batches(self, batch):
        """[B, ...] -> [A, B/A, ...] with micro-batch j = rows j, j+A, ...: a free reshape of
        the batch-sharded layout that leaves every micro-batch on every device."""
        a = self.grad_accum
        spec = jax.sharding.PartitionSpec(None, ("data", "fsdp"))

        def split(x):
            x = x.reshape(x.shape[0] // a, a, *x.shape[1:]).swapaxes(0, 1)
            return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(self.mesh, spec))

        return jax.tree.map(split, batch)

    def _train_step(self, state: State, batch, lr: jax.Array):
        value_and_grad = jax.value_and_grad(self._sums, has_aux=True)

        def sums(mb):
            (total, (count, metrics)), grads = value_and_grad(state["params"], mb)
            return grads, total, count, metrics

        if self.grad_accum == 1:
            grads, total, count, metrics = sums(batch)
        else:
            micro = self._micro_batches(batch)
            shapes = jax.eval_shape(sums, jax.tree.map(lambda x: x[0], micro))
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            zeros[3].update({k: (jnp.full_like(v[0], -jnp.inf), None)
                             for k, v in zeros[3].items() if k.endswith("_max")})
            add = lambda acc, mb: (_accumulate(acc, sums(mb)), None)
            (grads, total, count, metrics), _ = jax.lax.scan(add, zeros, micro)
        denom = jnp.maximum(count, 1e-9)
        grads = jax.tree.map(lambda g: g / denom, grads)
        updates, opt_state = self.optimizer.tx.update(grads, state["opt_state"], state["params"])
        updates = jax.tree.map(lambda u: lr * u, updates)
        params = optax.apply_updates(state["params"], updates)
        out = {"loss": total / denom, **_ratios(metrics), "grad_norm": optax.tree.norm(grads),
               "lr": lr, "count": count}
        return {**state, "params": params, "opt_state": opt_state, "step": state["step"] + 1}, out

    def _eval_step(self, params, batch):
        total, (count, metrics) = self._sums(params, batch)
        return {"loss": total / jnp.maximum(count, 1e-9), "count": count, **_ratios(metrics)}

    def _logprobs_fn(self, params, batch, temperature, *, top_k, top_p):
        fwd = self._forward(params, batch)
        lp = fwd.target_logprobs(temperature, top_k=top_k, top_p=top_p)
        return jnp.where(batch["loss_mask"] > 0, lp, 0.0)

    def _values_fn(self, params, batch):
        values = self._forward(params, batch).values
        if values is None:
            raise ValueError("Trainer.values: the model has no value head "
                             "(ModelConfig.value_head = True)")
        return values

    # ---- host API -----------------------------------------------------------------------------
    def put_batch(self, batch):
        """Places a host batch on the mesh, split along data x fsdp (each process its rows)."""
        b = len(jax.tree.leaves(batch)[0])
        split = self.grad_accum * parallel.batch_divisor(self.mesh)
        require(b % split == 0, "Trainer.grad_accum", self.grad_accum,
                f"times the data*fsdp size ({parallel.batch_divisor(self.mesh)}) must divide "
                f"the batch of {b} rows")
        return parallel.put_global(batch, self.mesh)

    def train_step(self, state: State, batch, lr: float
                   ) -> tuple[State, dict]:
        with jax.set_mesh(self.mesh):
            return self._train(state, self.put_batch(batch), jnp.float32(lr))

    def eval_step(self, params, batch: dict[str, np.ndarray]) -> dict:
        with jax.set_mesh(self.mesh):
            return self._eval(params, self.put_batch(batch))

    def logprobs(self, params, batch: dict[str, np.ndarray], temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0) -> jax.Array:
        """[B, T] log-prob of each target token (0 where loss_mask is 0) under the distribution
        the sampler draws from at these settings, from the exact ids of the batch."""
        with jax.set_mesh(self.mesh):
            return self._logprobs(params, self.put_batch(batch), jnp.float32(temperature),
                                  top_k=top_k, top_p=top_p)

    def values(self, params, batch: dict[str, np.ndarray]) -> jax.Array:
        """[B, T] value-head prediction after reading each token."""
        with jax.set_mesh(self.mesh):
            return self._values(params, self.put_batch(batch))


def _accumulate(acc, new):
    """Adds one micro-batch's (grads, total, count, metrics) to the running sums; metrics named
    `*_max` (count None) keep the maximum instead."""
    out = jax.tree.map(jnp.add, acc, new)
    out[3].update({k: (jnp.maximum(acc[3][k][0], new[3][k][0]), None)
                   for k in out[3] if k.endswith("_max")})
    return out


def _ratios(metrics: dict[str, tuple[jax.Array, jax.Array | None]]) -> dict[str, jax.Array]:
    """sum / count of each metric (the sum itself where its count is None)."""
    return {k: num if den is None else num / jnp.maximum(den, 1e-9)
            for k, (num, den) in metrics.items()}
