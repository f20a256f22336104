"""Train state and the jitted, sharded train/eval steps; knows no algorithm.

The state is a plain pytree {params, opt_state, step, rng}. Params are the model's nnx.Param
state; the graphdef stays outside jit. Shardings come from the params' logical axes, so the
same step runs on 1 CPU or a pod. Gradient accumulation scans over micro-batches inside the
step, so one step is always one optimizer update.
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
from jaxrl_reason.models.transformer import ModelConfig, Transformer
from jaxrl_reason.training.losses import LOSSES

State = dict[str, Any]


@gin.configurable(denylist=["model_cfg", "tx", "mesh"])
@dataclasses.dataclass
class Trainer:
    """Owns the compiled steps for one (model, optimizer, mesh, loss)."""

    model_cfg: ModelConfig
    tx: optax.GradientTransformation
    mesh: Mesh
    loss: str = "sft"
    grad_accum: int = 1

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"Trainer.loss={self.loss!r} is not one of {sorted(LOSSES)}")
        self.loss_fn = LOSSES[self.loss]
        abstract = nnx.eval_shape(lambda: Transformer(self.model_cfg, nnx.Rngs(0)))
        self.graphdef, abstract_params = nnx.split(abstract, nnx.Param)
        abstract_state = jax.eval_shape(
            lambda p: self._fresh_state(p, jax.random.key(0)), abstract_params
        )
        self.state_shardings = parallel.state_shardings(abstract_state, self.mesh)
        self.params_shardings = self.state_shardings["params"]
        self.abstract_state = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            abstract_state,
            self.state_shardings,
        )
        self._data = parallel.batch_sharding(self.mesh)
        self._repl = parallel.replicated(self.mesh)
        self._train = jax.jit(
            self._train_step,
            in_shardings=(self.state_shardings, self._data),
            out_shardings=(self.state_shardings, self._repl),
            donate_argnums=0,
        )
        self._eval = jax.jit(
            self._eval_step,
            in_shardings=(self.params_shardings, self._data),
            out_shardings=self._repl,
        )

    def _fresh_state(self, params, rng) -> State:
        return {
            "params": params,
            "opt_state": self.tx.init(params),
            "step": jnp.zeros((), jnp.int32),
            "rng": rng,
        }

    def init(self, seed: int) -> State:
        """A fresh state, created directly in its sharded layout (no host-side full copy)."""

        def make(key):
            params = nnx.state(Transformer(self.model_cfg, nnx.Rngs(params=key)), nnx.Param)
            return self._fresh_state(params, jax.random.fold_in(key, 1))

        with jax.set_mesh(self.mesh):
            return jax.jit(make, out_shardings=self.state_shardings)(jax.random.key(seed))

    def reset_optimizer(self, state: State, params=None) -> State:
        """New optimizer state and step 0 around `params` (e.g. the base model's, for STaR)."""
        params = state["params"] if params is None else params
        fresh = jax.jit(lambda p, r: self._fresh_state(p, r), out_shardings=self.state_shardings)
        with jax.set_mesh(self.mesh):
            return fresh(params, state["rng"])

    def model(self, params) -> Transformer:
        return nnx.merge(self.graphdef, params)

    def _loss(self, params, batch):
        return self.loss_fn(nnx.merge(self.graphdef, params), batch)

    def _train_step(self, state: State, batch: dict[str, jax.Array]):
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)
        if self.grad_accum == 1:
            (_, metrics), grads = grad_fn(state["params"], batch)
        else:
            micro = jax.tree.map(lambda x: x.reshape(self.grad_accum, -1, *x.shape[1:]), batch)

            def body(acc, mb):
                (_, m), g = grad_fn(state["params"], mb)
                return jax.tree.map(jnp.add, acc, (g, m)), None

            (_, m_shape), g_shape = jax.eval_shape(
                grad_fn, state["params"], jax.tree.map(lambda x: x[0], micro)
            )
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (g_shape, m_shape))
            (grads, metrics), _ = jax.lax.scan(body, zeros, micro)
            grads = jax.tree.map(lambda g: g / self.grad_accum, grads)
            metrics = {k: v if k == "tokens" else v / self.grad_accum for k, v in metrics.items()}
        updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics["grad_norm"] = optax.tree.norm(grads)
        new = {
            "params": params,
            "opt_state": opt_state,
            "step": state["step"] + 1,
            "rng": state["rng"],
        }
        return new, metrics

    def _eval_step(self, params, batch):
        return self._loss(params, batch)[1]

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Places a host batch on the mesh, split along data x fsdp."""
        return jax.device_put({k: np.asarray(v) for k, v in batch.items()}, self._data)

    def train_step(self, state: State, batch: dict[str, np.ndarray]) -> tuple[State, dict]:
        with jax.set_mesh(self.mesh):
            return self._train(state, self.put_batch(batch))

    def eval_step(self, params, batch: dict[str, np.ndarray]) -> dict:
        with jax.set_mesh(self.mesh):
            return self._eval(params, self.put_batch(batch))
