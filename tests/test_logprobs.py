"""Exact log-probs: the trainer's `logprobs` over a batch built from sampler output (its own
ids, explicit masks and positions) equal the log-probs the sampler reported when it drew each
token, to float32 rounding -- the ratio pi_theta / pi_old of every policy-gradient method
starts at 1. Ragged prompts, finished and truncated rows, top-k / top-p, and a model whose
argmax is the pad id (a sampled pad must never shift the positions after it)."""

import jax
import numpy as np
import pytest
from conftest import TINY, init_params

from jaxrl_reason import parallel
from jaxrl_reason.rollouts import batch_from_samples
from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig
from jaxrl_reason.training.optim import make_optimizer
from jaxrl_reason.training.trainer import Trainer

BANNED = (0, 1)
EOS = 2
rng = np.random.default_rng(0)
PROMPTS = [[1, *rng.integers(3, TINY.vocab_size, rng.integers(0, 12))] for _ in range(16)]


@pytest.fixture(scope="module")
def trainer():
    return Trainer(TINY, make_optimizer(), parallel.make_mesh(devices=jax.devices()[:1]),
                   banned_ids=BANNED)


def pad_loving(params):
    """Every embedding row shares a large common direction and the pad row three times as
    much of it: the pad id is the argmax at every position (see test_sampler)."""
    c = np.random.default_rng(1).normal(size=TINY.d_model).astype(np.float32)
    shift = np.tile(5 * c / np.linalg.norm(c), (TINY.vocab_size, 1))
    shift[0] *= 3
    return jax.tree_util.tree_map_with_path(
        lambda path, x: x + shift if "embed" in jax.tree_util.keystr(path) else x, params)


@pytest.mark.parametrize("model", ["random", "pad_argmax"])
@pytest.mark.parametrize("cfg", [
    SamplingConfig(max_new_tokens=24, temperature=0.7),
    SamplingConfig(max_new_tokens=24, temperature=0.7, top_k=5),
    SamplingConfig(max_new_tokens=24, temperature=0.7, top_p=0.9),
    SamplingConfig(max_new_tokens=24, temperature=0.7, top_k=8, top_p=0.8),
], ids=["plain", "top_k", "top_p", "both"])
def test_trainer_logprobs_equal_sampler_logprobs(trainer, model, cfg):
    params = init_params(TINY) if model == "random" else pad_loving(init_params(TINY))
    sampler = Sampler(TINY, stop_tokens=[EOS], banned_ids=BANNED)
    sampler.load(params)
    samples = sampler.generate(PROMPTS, cfg, key=7)
    if model == "random" and not (cfg.top_k or cfg.top_p < 1):
        assert samples.finished.any() and not samples.finished.all()  # finished and truncated
    batch = batch_from_samples(PROMPTS, samples, pad_id=0)
    assert not batch["tokens"][batch["input_mask"]][1:].tolist().count(0)  # no pad token inside
    got = np.asarray(trainer.logprobs(params, batch, cfg.temperature, top_k=cfg.top_k,
                                      top_p=cfg.top_p))
    mask = batch["loss_mask"] > 0
    assert mask.sum() == samples.lengths.sum()
    # A log-prob is a difference of logits / T of up to ~45 here (the pad-loving model), whose
    # float32 ulp is ~4e-6; the cached decode and the full forward round differently (seen: 2
    # ulps, 8e-6). 1e-4 leaves ~25 ulps; a shifted position, a temperature 0.1% off or a top-k
    # off by one moves some log-prob by > 1e-3.
    np.testing.assert_allclose(got[mask], batch["old_logprobs"][mask], atol=1e-4, rtol=0)
    assert np.isfinite(got[mask]).all() and (got[~mask] == 0).all()


def test_truncated_rows_get_no_eos_and_finished_rows_keep_theirs(trainer):
    params = init_params(TINY)
    sampler = Sampler(TINY, stop_tokens=[EOS], banned_ids=BANNED)
    sampler.load(params)
    samples = sampler.generate(PROMPTS, SamplingConfig(max_new_tokens=24, temperature=0.7), 7)
    batch = batch_from_samples(PROMPTS, samples, pad_id=0)
    for r, n in enumerate(samples.lengths):
        end = len(PROMPTS[r]) + n
        last = batch["tokens"][r, end - 1]
        assert (last == EOS) == samples.finished[r]
        assert not batch["input_mask"][r, end:].any()
    np.testing.assert_array_equal(batch["finished"], samples.finished)
