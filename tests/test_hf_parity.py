"""Logits and greedy continuations of every imported family against transformers itself, in
float32, on tiny random checkpoints that transformers made (tests/hf_tiny.py): the uncached
forward on a ragged batch, and the sampler's cached decode (tokens and each step's log-prob)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

hf_tiny = pytest.importorskip("hf_tiny", reason="the hf extra (torch, transformers) is absent")
torch = hf_tiny.torch

from flax import nnx  # noqa: E402

from jaxrl_reason import parallel  # noqa: E402
from jaxrl_reason.models.hf import HFCheckpoint  # noqa: E402
from jaxrl_reason.models.hf.weights import abstract_params  # noqa: E402
from jaxrl_reason.models.transformer import Transformer  # noqa: E402
from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig  # noqa: E402

LENGTHS = (40, 23, 9)  # a ragged, right-padded batch
PROMPTS = (5, 17)  # prefills of one and two prompt buckets
NEW_TOKENS = 32


@functools.cache
def imported(family: str):
    ckpt = HFCheckpoint(str(hf_tiny.checkpoint(family)))
    cfg = ckpt.model_config()
    mesh = parallel.make_mesh(devices=jax.devices()[:1])
    return cfg, ckpt.load_params(cfg, parallel.state_shardings(abstract_params(cfg), mesh))


def tokens(seed: int, shape) -> np.ndarray:
    return np.random.RandomState(seed).randint(3, hf_tiny.VOCAB, shape)


@pytest.mark.parametrize("family", sorted(hf_tiny.FAMILIES))
def test_logits_match_transformers_on_a_ragged_batch(family):
    cfg, params = imported(family)
    batch = tokens(0, (len(LENGTHS), max(LENGTHS)))
    mask = np.arange(batch.shape[1])[None, :] < np.asarray(LENGTHS)[:, None]
    batch = np.where(mask, batch, 0)
    ref_model = hf_tiny.reference(hf_tiny.checkpoint(family))
    with torch.no_grad():
        ref = ref_model(torch.tensor(batch), attention_mask=torch.tensor(mask.astype(np.int64))
                        ).logits.numpy()
    graphdef = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, nnx.Rngs(0))), nnx.Param)[0]
    apply = jax.jit(lambda p, t, m: nnx.merge(graphdef, p)(t, input_mask=m)[0])
    ours = np.asarray(apply(params, jnp.asarray(batch), jnp.asarray(mask)))
    diff = np.abs(ours - ref)[mask].max()
    print(f"{family}: max |logit difference| {diff:.1e} (logits up to {np.abs(ref).max():.1f})")
    assert diff <= 1e-4, f"{family}: max |logit difference| {diff:.2e} over real tokens"


@pytest.mark.parametrize("family", sorted(hf_tiny.FAMILIES))
def test_greedy_continuations_match_transformers_generate(family):
    cfg, params = imported(family)
    prompts = [tokens(n, (n,)).tolist() for n in PROMPTS]
    sampler = Sampler(cfg, stop_tokens=[], banned_ids=())
    sampler.load(params)
    ours = sampler.generate(prompts, SamplingConfig(max_new_tokens=NEW_TOKENS, temperature=0.0))
    ref_model = hf_tiny.reference(hf_tiny.checkpoint(family))
    for i, prompt in enumerate(prompts):
        with torch.no_grad():
            out = ref_model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS,
                                     do_sample=False, eos_token_id=None, pad_token_id=0)
        want = out[0, len(prompt):].tolist()
        assert len(want) == NEW_TOKENS
        assert ours.tokens[i].tolist() == want, f"{family}: prompt {i} diverges"
        # Each decode step's log-prob (through our KV cache) against transformers' log-softmax
        # of the whole sequence, so the cached path is checked in value, not only in argmax.
        with torch.no_grad():
            logp = torch.log_softmax(ref_model(out).logits[0], dim=-1).numpy()
        want_lp = logp[np.arange(len(prompt) - 1, out.shape[1] - 1), want]
        diff = np.abs(ours.logprobs[i] - want_lp).max()
        assert diff <= 1e-4, f"{family}: prompt {i} decode log-probs off by {diff:.1e}"
