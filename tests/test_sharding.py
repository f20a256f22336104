"""Parallelism is a config change: on 8 fake CPU devices, data / fsdp / tensor sharding give
the 1-device training step, sampling and checkpoints, and bad meshes fail with a clear error."""

import functools

import jax
import numpy as np
import pytest
from conftest import TINY, init_params
from jax.sharding import PartitionSpec

from jaxrl_reason import parallel
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig
from jaxrl_reason.training.checkpoints import Checkpointer
from jaxrl_reason.training.optim import make_optimizer
from jaxrl_reason.training.trainer import Trainer

# Every sharded dimension divides 8, so each mesh axis really splits something.
CFG = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=16, n_kv_heads=8, head_dim=4,
                  d_ff=64, max_len=32)
MESHES = {
    "one": None,
    "data": dict(data=8),
    "fsdp": dict(data=1, fsdp=8),
    "tensor": dict(data=1, tensor=8),
    "mixed": dict(data=2, fsdp=2, tensor=2),
}


def batches(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Right-padded rows with the same number of loss tokens each (so per-token means over
    any split of the rows are equal, which grad accumulation relies on)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tokens = rng.integers(3, CFG.vocab_size, (8, 16), dtype=np.int32)
        mask = np.zeros((8, 16), np.int32)
        for i in range(8):
            prompt, length = 2 + i % 4, 12 + i % 3
            tokens[i, length:] = 0
            mask[i, prompt:prompt + 8] = 1
        out.append({"tokens": tokens, "loss_mask": mask})
    return out


@functools.cache
def trainer(name: str, grad_accum: int = 1) -> Trainer:
    """One Trainer (so one compiled step) per mesh, shared by the tests."""
    mesh = MESHES[name]
    devices = jax.devices()[:1] if mesh is None else None
    return Trainer(CFG, make_optimizer(10, learning_rate=1e-2, warmup_steps=1),
                   parallel.make_mesh(**(mesh or {}), devices=devices), grad_accum=grad_accum)


def initial_state(tr: Trainer):
    """The 1-device init, placed on `tr`'s mesh: every mesh starts from the same numbers."""
    return jax.device_put(trainer("one").init(0), tr.state_shardings)


def run(tr: Trainer, steps: int = 2):
    state = initial_state(tr)
    metrics = []
    for batch in batches(steps):
        state, m = tr.train_step(state, batch)
        metrics.append(jax.device_get(m))
    return jax.device_get(state["params"]), metrics, state


@pytest.fixture(scope="module")
def reference():
    return run(trainer("one"))


def assert_trees_close(a, b, **tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **tol)


@pytest.mark.parametrize("name", ["data", "fsdp", "tensor", "mixed"])
def test_train_step_matches_one_device(devices, reference, name):
    tr = trainer(name)
    specs = {str(s.spec) for s in jax.tree.leaves(tr.params_shardings)}
    axes = {a for a, n in MESHES[name].items() if n > 1} - {"data"}
    assert all(any(a in s for s in specs) for a in axes), specs  # params are really split
    params, metrics, state = run(tr)
    assert len(state["params"]["embed"][...].sharding.device_set) == 8
    ref_params, ref_metrics, _ = reference
    for m, ref in zip(metrics, ref_metrics, strict=True):
        assert m.keys() == ref.keys()
        for k in m:
            np.testing.assert_allclose(m[k], ref[k], rtol=2e-5, err_msg=k)
    assert_trees_close(params, ref_params, atol=2e-6, rtol=1e-5)


def test_grad_accumulation_equals_one_big_batch(devices):
    one, one_metrics, _ = run(trainer("mixed"))
    two, two_metrics, _ = run(trainer("mixed", grad_accum=2))
    for m, ref in zip(two_metrics, one_metrics, strict=True):
        for k in ("loss", "token_accuracy", "tokens", "grad_norm"):
            np.testing.assert_allclose(m[k], ref[k], rtol=2e-5, err_msg=k)
    assert_trees_close(two, one, atol=2e-6, rtol=1e-5)


PROMPTS = [[1, 5, 9], [1, 7, 22, 13, 9, 5, 3], [1], [1, 12, 25, 6, 10], [1, 2]]
SAMPLING = SamplingConfig(max_new_tokens=8, temperature=1.0, top_k=5, n=2)


@pytest.fixture(scope="module")
def sampling_params():
    return jax.tree.map(lambda x: 2.0 * x, init_params(TINY))  # see test_sampler.params


@pytest.fixture(scope="module")
def unsharded_samples(sampling_params):
    return Sampler(TINY, [2]).generate(sampling_params, PROMPTS, SAMPLING, seed=4)


@pytest.mark.parametrize("mesh", [dict(data=2, tensor=2), dict(fsdp=2, tensor=4)])
def test_sharded_sampling_equals_unsharded(devices, sampling_params, unsharded_samples, mesh):
    """Same seed, same samples: the random draws and the logits do not depend on the mesh."""
    n = int(np.prod(list(mesh.values())))
    sampler = Sampler(TINY, [2], mesh=parallel.make_mesh(**mesh, devices=jax.devices()[:n]))
    params = jax.device_put(sampling_params, sampler.params_shardings)
    assert any("tensor" in str(p.sharding.spec) for p in jax.tree.leaves(params))
    got, want = sampler.generate(params, PROMPTS, SAMPLING, seed=4), unsharded_samples
    assert len(set(want.lengths)) > 1  # the stop token ends some rows early
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_array_equal(got.lengths, want.lengths)
    np.testing.assert_allclose(got.logprobs, want.logprobs, atol=1e-4)


def test_checkpoint_restores_onto_a_different_mesh(devices, tmp_path):
    src = trainer("data")
    _, _, state = run(src, steps=1)
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save(1, state, {"note": "saved on data=8"})
    ckpt.close()
    dst = trainer("mixed")
    ckpt = Checkpointer(str(tmp_path))
    restored, extra = ckpt.restore(dst.abstract_state)
    ckpt.close()
    assert extra == {"note": "saved on data=8"}
    assert int(restored["step"]) == 1
    for got, want, sharding in zip(jax.tree.leaves(restored), jax.tree.leaves(state),
                                   jax.tree.leaves(dst.state_shardings), strict=True):
        if jax.dtypes.issubdtype(got.dtype, jax.dtypes.prng_key):
            assert got.sharding.is_equivalent_to(sharding, got.ndim)
            got, want = jax.random.key_data(got), jax.random.key_data(want)
        assert got.sharding.is_equivalent_to(sharding, got.ndim)
        np.testing.assert_array_equal(got, want)


def test_mesh_sizes_fill_and_fail_clearly(devices):
    assert parallel.make_mesh(fsdp=2).shape == {"data": 4, "fsdp": 2, "tensor": 1}
    with pytest.raises(parallel.MeshError, match="does not divide the 8 devices"):
        parallel.make_mesh(data=-1, tensor=3)
    with pytest.raises(parallel.MeshError, match="product is 8"):
        parallel.make_mesh(data=3)
    with pytest.raises(parallel.MeshError, match="at most one"):
        parallel.make_mesh(data=-1, fsdp=-1)
    with pytest.raises(parallel.MeshError, match="positive"):
        parallel.make_mesh(data=0)


def test_logical_rules_leave_undividable_dims_replicated(devices):
    mesh = parallel.make_mesh(data=2, tensor=4)
    spec = parallel.logical_to_mesh_spec(("embed", "heads", "kv"), shape=(32, 8, 4), mesh=mesh)
    assert spec == PartitionSpec(None, "tensor", None)  # fsdp=1: embed stays whole
    spec = parallel.logical_to_mesh_spec(("vocab", "embed"), shape=(42, 32), mesh=mesh)
    assert spec == PartitionSpec(None, None)  # 42 % 4 != 0
    spec = parallel.logical_to_mesh_spec(("batch", "length"), shape=(8, 16), mesh=mesh)
    assert spec == PartitionSpec("data", None)
