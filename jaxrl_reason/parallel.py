"""Device mesh, logical-axis rules, and placing host data on the mesh from every process.

Parameters are annotated with logical axis names (embed, mlp, heads, kv, vocab, layers); a rule
table maps those names onto the mesh axes (data, fsdp, tensor). Changing the parallelism is then
a config change: the model code never names a mesh axis. The training layout shards `embed` over
fsdp; the decode layout (the sampler's copy of the weights) keeps every weight whole on the fsdp
axis, so no generated token waits for an all-gather of the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import gin
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrl_reason.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# logical name -> mesh axis (or axes, or None = replicated).
DEFAULT_RULES: Rules = (
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


class MeshError(ConfigError):
    """The configured mesh cannot be built on the devices present."""


@gin.configurable
def axis_rules(overrides: Rules = (), decode: bool = False,
               decode_overrides: Rules = (("embed", None),)) -> Rules:
    """The rule table in force: DEFAULT_RULES with `overrides` (gin-configurable), and for the
    decode layout `decode_overrides` on top."""
    table = dict(DEFAULT_RULES)
    known = set(table)
    for name, _ in (*overrides, *(decode_overrides if decode else ())):
        if name not in known:
            raise ConfigError(f"axis_rules: unknown logical axis {name!r}; known: {sorted(known)}")
    table.update(dict(overrides))
    if decode:
        table.update(dict(decode_overrides))
    return tuple(table.items())


@gin.configurable(denylist=["devices"])
def make_mesh(
    data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A (data, fsdp, tensor) mesh; at most one size may be -1 (= fill with remaining devices).

    Devices are in jax.devices() order (process-major), so on several processes the data axis
    spans them and each process holds a contiguous block of the batch."""
    devices = list(devices if devices is not None else jax.devices())
    sizes = [data, fsdp, tensor]
    n = len(devices)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
        raise MeshError(f"make_mesh: data/fsdp/tensor must be integers, got {sizes}")
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
    rules: Rules | None = None,
    shape: Sequence[int] | None = None,
    mesh: Mesh | None = None,
) -> PartitionSpec:
    """Maps logical axis names to mesh axes. A dim that the mesh axes do not divide stays
    replicated (tiny models on big meshes), and a mesh axis is used at most once."""
    table = dict(axis_rules() if rules is None else rules)
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


def state_shardings(state, mesh: Mesh, rules: Rules | None = None):
    """NamedShardings, in the same tree structure, for a pytree of nnx Variables (by their
    `logical_axes` metadata) and plain arrays.

    Arrays without logical axes (optimizer counts, steps) are replicated; optimizer moments
    are nnx Variables that keep the metadata of their parameter, so they shard like it."""
    from flax import nnx

    rules = axis_rules() if rules is None else rules

    def one(leaf):
        if not isinstance(leaf, nnx.Variable):
            return NamedSharding(mesh, PartitionSpec())
        axes = leaf.get_metadata().get("logical_axes")
        shape = getattr(leaf.get_value(), "shape", ())
        spec = PartitionSpec()
        if axes is not None:
            if len(axes) != len(shape):
                raise ValueError(f"logical axes {axes} do not fit a parameter of shape {shape}")
            spec = logical_to_mesh_spec(axes, rules, shape, mesh)
        return leaf.replace(NamedSharding(mesh, spec))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dim over data x fsdp, the rest replicated; fits arrays of any rank."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_divisor(mesh: Mesh) -> int:
    """How many ways the batch dim is split (data x fsdp)."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def process_rows(mesh: Mesh, global_rows: int) -> slice:
    """The rows of a batch-sharded [global_rows, ...] array that this process's devices hold."""
    sharding = batch_sharding(mesh)
    indices = sharding.addressable_devices_indices_map((global_rows,))
    starts = sorted({idx[0].start or 0 for idx in indices.values()})
    stops = sorted({idx[0].stop if idx[0].stop is not None else global_rows
                    for idx in indices.values()})
    return slice(starts[0], stops[-1])


def put_global(tree, mesh: Mesh):
    """Places a host pytree of GLOBAL arrays on the mesh, split along data x fsdp.

    Every process passes the same global arrays and contributes only its own rows
    (`jax.make_array_from_process_local_data`), so nothing is sent between hosts."""
    sharding = batch_sharding(mesh)

    def one(x):
        x = np.asarray(x)
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        local = x[process_rows(mesh, x.shape[0])]
        return jax.make_array_from_process_local_data(sharding, local, x.shape)

    return jax.tree.map(one, tree)


def to_host(tree):
    """Host numpy copies of (possibly multi-process, batch-sharded) arrays, whole on every
    process: a process allgather where other processes hold part of them."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, jax.device_get(tree))
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def constrain(x: jax.Array, logical: Sequence[str | None]) -> jax.Array:
    """Activation sharding hint under the mesh set by `jax.set_mesh`; a no-op without one.
    The rule table is `axis_rules()`, so logical-axis rules configured in gin apply here too."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty:
        return x
    spec = logical_to_mesh_spec(logical, axis_rules(), x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, spec)
