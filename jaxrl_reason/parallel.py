"""Device mesh, logical-axis rules and multi-host start.

Parameters are annotated with logical axis names (embed, mlp, heads, kv, vocab); a rule
table maps those names onto the mesh axes (data, fsdp, tensor). Changing the parallelism
is then a config change: the model code never names a mesh axis.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import gin
import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axis (or axes, or None = replicated).
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("layers", None),
)


class MeshError(ValueError):
    """The configured mesh cannot be built on the devices present."""


def maybe_initialize_distributed() -> None:
    """Starts jax.distributed on multi-host TPU/GPU jobs; a no-op on one host."""
    multi_host_env = any(
        k in os.environ
        for k in (
            "TPU_WORKER_HOSTNAMES",
            "MEGASCALE_COORDINATOR_ADDRESS",
            "JAX_COORDINATOR_ADDRESS",
        )
    )
    if multi_host_env and "," in os.environ.get("TPU_WORKER_HOSTNAMES", ","):
        jax.distributed.initialize()
        logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())


@gin.configurable(denylist=["devices"])
def make_mesh(
    data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A (data, fsdp, tensor) mesh; at most one size may be -1 (= fill with remaining devices)."""
    devices = list(devices if devices is not None else jax.devices())
    sizes = [data, fsdp, tensor]
    n = len(devices)
    if sizes.count(-1) > 1:
        raise MeshError(f"make_mesh: at most one of data/fsdp/tensor may be -1, got {sizes}")
    if any(s == 0 or s < -1 for s in sizes):
        raise MeshError(f"make_mesh: axis sizes must be positive or -1, got {sizes}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if n % known:
            raise MeshError(
                f"make_mesh: data={data} fsdp={fsdp} tensor={tensor} does not divide the {n} "
                f"devices present; set make_mesh.* so that their product divides {n}"
            )
        sizes[sizes.index(-1)] = n // known
    if int(np.prod(sizes)) != n:
        raise MeshError(
            f"make_mesh: data*fsdp*tensor = {int(np.prod(sizes))} but {n} devices are present; "
            f"set make_mesh.data/fsdp/tensor so that the product is {n} (or use -1 for one axis)"
        )
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES)


def logical_to_mesh_spec(
    logical: Sequence[str | None] | PartitionSpec,
    rules: Sequence[tuple[str, str | tuple[str, ...] | None]] = DEFAULT_RULES,
    shape: Sequence[int] | None = None,
    mesh: Mesh | None = None,
) -> PartitionSpec:
    """Maps logical axis names to mesh axes. A dim that the mesh axes do not divide stays
    replicated (tiny models on big meshes), and a mesh axis is used at most once."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for i, name in enumerate(logical):
        axes = table.get(name) if name is not None else None
        if axes is None:
            out.append(None)
            continue
        axes = (axes,) if isinstance(axes, str) else tuple(axes)
        axes = tuple(a for a in axes if a not in used)
        if mesh is not None:
            axes = tuple(a for a in axes if mesh.shape[a] > 1)
            if shape is not None and axes:
                size = int(np.prod([mesh.shape[a] for a in axes]))
                if shape[i] % size:
                    axes = ()
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def state_shardings(state, mesh: Mesh, rules=DEFAULT_RULES):
    """NamedShardings, in the same tree structure, for a pytree of nnx Variables (by their
    `logical_axes` metadata) and plain arrays.

    Arrays without logical axes (optimizer counts, RNG keys) are replicated; optimizer moments
    are nnx Variables that keep the metadata of their parameter, so they shard like it."""
    from flax import nnx

    def one(leaf):
        if not isinstance(leaf, nnx.Variable):
            return NamedSharding(mesh, PartitionSpec())
        axes = leaf.get_metadata().get("logical_axes")
        shape = getattr(leaf.get_value(), "shape", ())
        spec = PartitionSpec()
        if axes is not None and len(axes) == len(shape):
            spec = logical_to_mesh_spec(axes, rules, shape, mesh)
        return leaf.replace(NamedSharding(mesh, spec))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dim over data x fsdp, the rest replicated; fits arrays of any rank."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def constrain(x: jax.Array, logical: Sequence[str | None]) -> jax.Array:
    """Activation sharding hint under the mesh set by `jax.set_mesh`; a no-op without one."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty:
        return x
    spec = logical_to_mesh_spec(logical, DEFAULT_RULES, x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, spec)
