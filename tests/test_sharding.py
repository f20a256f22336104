"""Parallelism is a config change: on 8 fake CPU devices, data / fsdp / tensor sharding give
the 1-device training step, sampling and checkpoints, and bad meshes fail with a clear error."""

import functools

import jax
import numpy as np
import pytest
from conftest import TINY, init_params
from jax.sharding import PartitionSpec

from jaxrl_reason import parallel
from jaxrl_reason.data.batching import Example, make_batch
from jaxrl_reason.errors import ConfigError
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


def batches(n: int, seed: int = 0, rows: int = 8) -> list[dict[str, np.ndarray]]:
    """Right-padded rows of different lengths and loss-token counts (3 to 14 targets): a
    step that averaged per-micro-batch means would differ from the one big batch."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        examples = []
        for i in range(rows):
            prompt, length = 2 + i % 4, 5 + (5 * i) % 12
            ids = rng.integers(3, CFG.vocab_size, length)
            examples.append(Example(tuple(ids[:prompt]), tuple(ids[prompt:])))
        out.append(make_batch(examples, 16, pad_id=0))
    return out


@functools.cache
def trainer(name: str, grad_accum: int = 1) -> Trainer:
    """One Trainer (so one compiled step) per mesh, shared by the tests."""
    mesh = MESHES[name]
    devices = jax.devices()[:1] if mesh is None else None
    return Trainer(CFG, make_optimizer(learning_rate=1e-2, warmup_steps=1),
                   parallel.make_mesh(**(mesh or {}), devices=devices), grad_accum=grad_accum)


def initial_state(tr: Trainer):
    """The 1-device init, placed on `tr`'s mesh: every mesh starts from the same numbers."""
    return jax.device_put(trainer("one").init(0), tr.state_shardings)


def run(tr: Trainer, steps: int = 2):
    state = initial_state(tr)
    metrics = []
    for batch in batches(steps):
        state, m = tr.train_step(state, batch, 1e-2)
        metrics.append(jax.device_get(m))
    return jax.device_get(state["params"]), metrics, state


@pytest.fixture(scope="module")
def reference():
    return run(trainer("one"))


@functools.cache
def initial_params() -> list[np.ndarray]:
    return jax.tree.leaves(jax.device_get(trainer("one").init(0)["params"]))


def assert_same_update(params, ref_params):
    """Sharding reorders float32 sums (only the metrics' rounding, ~1e-7, shows), but Adam
    divides each gradient by its own size: a near-zero one's rounding becomes a visible part of
    its step (5e-6 of a 2e-2 step here, more on other CPUs), so not every parameter can match
    to 1e-5. The claim is about the step: the update (after - before) matches to 1e-3 of its
    norm (seen: < 4e-6); one row dropped or micro-batches averaged as means is off by > 1e-1."""
    def update(p):
        return np.concatenate([(np.asarray(x) - x0).ravel() for x, x0 in
                               zip(jax.tree.leaves(p), initial_params(), strict=True)])
    got, want = update(params), update(ref_params)
    rel = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert rel < 1e-3, f"the update differs by {rel:.2e} of its norm"


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
    assert_same_update(params, ref_params)


@pytest.mark.parametrize("mesh, accum", [("one", 4), ("mixed", 2), ("data", 1)])
def test_grad_accumulation_equals_one_big_batch(devices, mesh, accum):
    """Micro-batches holding different token counts: sums and counts are accumulated and
    divided once, so 4 micro-batches on 1 device and 2 on 8 devices give the one-batch step."""
    rows = batches(1)[0]["loss_mask"][:, 1:].sum(1)
    if accum > 1:  # micro-batch j holds rows j, j + accum, ...
        assert len({rows[j::accum].sum() for j in range(accum)}) > 1
    one, one_metrics, _ = run(trainer("one"))
    two, two_metrics, _ = run(trainer(mesh, grad_accum=accum))
    for m, ref in zip(two_metrics, one_metrics, strict=True):
        for k in ("loss", "token_accuracy", "tokens", "grad_norm", "count"):
            np.testing.assert_allclose(m[k], ref[k], rtol=2e-5, err_msg=k)
    assert_same_update(two, one)


def _collectives(tr: Trainer) -> dict[str, int]:
    batch = tr.put_batch(batches(1, rows=16)[0])
    with jax.set_mesh(tr.mesh):
        hlo = tr._train.lower(initial_state(tr), batch, np.float32(1e-2)).compile().as_text()
    return {op: hlo.count(f" {op}(") for op in ("all-gather", "collective-permute",
                                                 "all-to-all")}


def test_micro_batches_are_laid_across_all_devices(devices):
    """On 8 data-parallel devices, accumulating over 2 micro-batches adds no all-gather,
    collective-permute or all-to-all of activations: each micro-batch is a strided slice
    that every device holds a part of (a contiguous split would put each on 4 devices)."""
    assert _collectives(trainer("data", grad_accum=2)) == _collectives(trainer("data"))


def test_a_batch_that_does_not_split_is_a_config_error(devices):
    with pytest.raises(ConfigError, match="grad_accum"):
        trainer("data", grad_accum=3).put_batch(batches(1)[0])


PROMPTS = [[1, 5, 9], [1, 7, 22, 13, 9, 5, 3], [1], [1, 12, 25, 6, 10], [1, 2]]
SAMPLING = SamplingConfig(max_new_tokens=8, temperature=1.0, top_k=5, n=2)


@pytest.fixture(scope="module")
def sampling_params():
    return jax.tree.map(lambda x: 2.0 * x, init_params(TINY))  # see test_sampler.params


@pytest.fixture(scope="module")
def unsharded_samples(sampling_params):
    sampler = Sampler(TINY, [2], banned_ids=(0, 1))
    sampler.load(sampling_params)
    return sampler.generate(PROMPTS, SAMPLING, key=4)


@pytest.mark.parametrize("mesh", [dict(data=2, tensor=2), dict(fsdp=2, tensor=4)])
def test_sharded_sampling_equals_unsharded(devices, sampling_params, unsharded_samples, mesh):
    """Same seed, same samples: the random draws and the logits do not depend on the mesh."""
    n = int(np.prod(list(mesh.values())))
    sampler = Sampler(TINY, [2], mesh=parallel.make_mesh(**mesh, devices=jax.devices()[:n]),
                      banned_ids=(0, 1))
    train_layout = parallel.state_shardings(sampling_params, sampler.mesh)
    sampler.load(jax.device_put(sampling_params, train_layout))
    specs = [str(p.sharding.spec) for p in jax.tree.leaves(sampler.params)]
    assert any("tensor" in s for s in specs)
    assert not any("fsdp" in s for s in specs)  # the decode layout: no FSDP shards to gather
    got, want = sampler.generate(PROMPTS, SAMPLING, key=4), unsharded_samples
    assert len(set(want.lengths)) > 1  # the stop token ends some rows early
    # Sharding changes the logits by rounding only (~1e-5 in the log-probs), while the closest
    # draw here is 2e-2 (noisy log-probs) and the closest top-k cut 8e-3 apart: exact tokens.
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
