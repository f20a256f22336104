"""The RL loss against numpy: the clipped objective (clip-higher, dual clip), GSPO's sequence
ratio and its gradient (verl's stop-gradient form and TRL's), each loss aggregation (the peers'
divisors on hand-counted batches), each KL estimator (clamped and not), entropy and the clipped
value loss; and the same loss, metrics and update on 1 and 8 devices and with 1 and 4
micro-batches (normalized over the global batch)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY, init_params

from jaxrl_reason import parallel
from jaxrl_reason.data.batching import Example, make_batch
from jaxrl_reason.errors import ConfigError
from jaxrl_reason.rl import aggregation, kl, policy_losses
from jaxrl_reason.rl.batch import RLBatch
from jaxrl_reason.rl.objective import (
    RLLoss,
    entropy,
    norm_inputs,
    policy_gradient_loss,
    value_loss,
)
from jaxrl_reason.training.losses import Forward
from jaxrl_reason.training.optim import make_optimizer
from jaxrl_reason.training.trainer import Trainer

RNG = np.random.default_rng(0)


def loss_batch(mask, **fields) -> RLBatch:
    """An RLBatch with what the loss reads (its model inputs are the forward's business)."""
    zeros = np.zeros(mask.shape, np.int32)
    return RLBatch(tokens=zeros, input_mask=mask > 0, positions=zeros, loss_mask=mask, **fields)


def np_clip_loss(logp, old, adv, lo, hi, c=None):
    ratio = np.exp(logp - old)
    loss = np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - lo, 1 + hi))
    if c is not None:
        loss = np.where(adv < 0, np.minimum(loss, -adv * c), loss)
    return loss


def test_clip_loss_matches_numpy_with_clip_higher_and_dual_clip():
    logp, old = RNG.normal(size=(4, 9)) * 0.7, RNG.normal(size=(4, 9)) * 0.7
    adv = RNG.normal(size=(4, 9))
    mask = np.ones((4, 9))
    for dual in (None, 3.0):
        clip = policy_losses.Clip(0.2, 0.28, dual)
        loss, ind = policy_losses.clip_loss(jnp.asarray(logp), jnp.asarray(old),
                                            jnp.asarray(adv), jnp.asarray(mask), clip)
        np.testing.assert_allclose(loss, np_clip_loss(logp, old, adv, 0.2, 0.28, dual),
                                   rtol=1e-6)
        ratio = np.exp(logp - old)
        np.testing.assert_array_equal(ind["clip_low"], (adv < 0) & (ratio < 0.8))
        np.testing.assert_array_equal(ind["clip_high"], (adv > 0) & (ratio > 1.28))
    assert ind["dual_clip"].sum() > 0  # the example reaches the dual clip: ratio > 3, A < 0
    np.testing.assert_array_equal(ind["dual_clip"], (adv < 0) & (ratio > 3.0))


def test_clip_gradient_is_zero_outside_the_range():
    """Clip-higher: a positive-advantage token whose ratio is past 1 + eps_high, or a negative
    one under 1 - eps_low, contributes no gradient; inside the range the gradient is -A rho."""
    clip = policy_losses.Clip(0.2, 0.28)
    old = jnp.zeros(4)
    logp = jnp.log(jnp.array([1.3, 0.7, 1.1, 1.1]))
    adv = jnp.array([1.0, -1.0, 1.0, -1.0])
    grad = jax.grad(lambda lp: policy_losses.clip_loss(lp, old, adv, None, clip)[0].sum())(logp)
    np.testing.assert_allclose(grad, [0.0, 0.0, -1.1, 1.1], rtol=1e-6)


def test_gspo_uses_one_clipped_ratio_per_sequence():
    logp = RNG.normal(size=(3, 6)) * 0.3
    old = logp + RNG.normal(size=(3, 6)) * 0.1
    mask = np.ones((3, 6))
    mask[1, 4:] = 0
    adv = np.repeat(RNG.normal(size=(3, 1)), 6, axis=1)
    clip = policy_losses.Clip(0.01, 0.02)
    seq = ((logp - old) * mask).sum(1) / mask.sum(1)
    s = np.exp(seq)[:, None]
    want = np.maximum(-adv * s, -adv * np.clip(s, 0.99, 1.02))
    args = [jnp.asarray(a) for a in (logp, old, adv, mask)]
    loss, _ = policy_losses.gspo_loss(*args, clip)
    np.testing.assert_allclose(np.asarray(loss) * mask, want * mask, rtol=1e-6)
    # The gradient w.r.t. token t of sequence i is -A_i s_i (unclipped), as if s_i's
    # exponent were log pi_t: the stop-gradient trick, not the sequence mean's 1/|o_i|.
    unclipped = policy_losses.Clip(10.0, 10.0)
    grad = jax.grad(lambda lp: (policy_losses.gspo_loss(lp, *args[1:], unclipped)[0]
                                * args[3]).sum())(args[0])
    np.testing.assert_allclose(grad, -adv * s * mask, rtol=1e-5)


def test_kl_estimators_match_numpy_and_k3_is_clamped():
    logp, ref = RNG.normal(size=20), RNG.normal(size=20)
    np.testing.assert_allclose(kl.k1(logp, ref), logp - ref, rtol=1e-6)
    np.testing.assert_allclose(kl.k2(logp, ref), 0.5 * (logp - ref) ** 2, rtol=1e-6)
    r = ref - logp
    np.testing.assert_allclose(kl.k3(jnp.asarray(logp), jnp.asarray(ref)),
                               np.exp(r) - r - 1, rtol=1e-5, atol=1e-8)
    # log-ratio +40 (exp would be 2e17) or -40 (the estimate 39): both clamped at 10
    assert float(kl.k3(jnp.float32(-50.0), jnp.float32(-10.0))) == 10.0
    assert float(kl.k3(jnp.float32(-10.0), jnp.float32(-50.0))) == 10.0
    assert float(kl.k3(jnp.float32(-10.0), jnp.float32(-15.0))) == pytest.approx(
        np.exp(-5.0) + 4.0, rel=1e-6)


def test_k3_unclamped_is_trl_and_tunix_k3():
    """exp(r) - r - 1 with r = ref - logp, no clamp (TRL's per_token_kl, tunix's low_var_kl):
    r = ln 2 gives 2 - ln 2 - 1; r = -40 gives e^-40 + 39 and r = +40 gives e^40 - 41, where
    our k3 stops at 10."""
    logp = jnp.float32([-1.0, -10.0, -50.0, -3.0])
    ref = jnp.float32([-1.0 + np.log(2.0), -50.0, -10.0, -3.0])
    want = [1.0 - np.log(2.0), 39.0 + np.exp(-40.0), np.exp(40.0) - 41.0, 0.0]
    np.testing.assert_allclose(kl.k3_unclamped(logp, ref), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(kl.k3(logp, ref)[1:3], [10.0, 10.0])
    assert kl.get("k3_unclamped") is kl.k3_unclamped
    assert RLLoss(kl_estimator="k3_unclamped").kl_estimator == "k3_unclamped"


def test_gspo_sequence_puts_the_gradient_through_the_sequence_mean():
    """TRL's sequence-level ratio, worked by hand (eps 0.2, each row's token losses summed):
    row 0: log-ratios [.3, -.1] (the third token is masked), s = e^.1, A = [1, -1]:
      loss [-s, s]; the gradient of the row's sum through the mean is -s (1 - 1) / 2 = 0 on
      both tokens, where verl's stop-gradient gspo gives [-s, s];
    row 1: log-ratios .6, s = e^.6 > 1.2, A = 1: clipped, loss -1.2 per token, no gradient;
    row 2: log-ratios [0, .3, -.3], s = 1, A = 2: loss -2, gradient -2 on each token (the
    same as gspo's when a row's advantages are uniform)."""
    mask = np.array([[1, 1, 0], [1, 1, 1], [1, 1, 1]], float)
    ratio = np.array([[0.3, -0.1, 5.0], [0.6, 0.6, 0.6], [0.0, 0.3, -0.3]])
    adv = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    old = jnp.asarray(RNG.normal(size=(3, 3)), jnp.float32)
    logp = old + jnp.asarray(ratio, jnp.float32)
    args = (old, jnp.asarray(adv, jnp.float32), jnp.asarray(mask, jnp.float32),
            policy_losses.Clip(0.2, 0.2))
    s = np.exp(0.1)
    loss, ind = policy_losses.gspo_sequence_loss(logp, *args)
    np.testing.assert_allclose(np.asarray(loss) * mask,
                               [[-s, s, 0], [-1.2, -1.2, -1.2], [-2, -2, -2]], rtol=1e-6)
    np.testing.assert_array_equal(ind["clip_high"][1], [1, 1, 1])

    def grad(fn):
        return np.asarray(jax.grad(lambda lp: (fn(lp, *args)[0] * args[2]).sum())(logp))

    np.testing.assert_allclose(grad(policy_losses.gspo_sequence_loss),
                               [[0, 0, 0], [0, 0, 0], [-2, -2, -2]], atol=1e-6)
    np.testing.assert_allclose(grad(policy_losses.gspo_loss),
                               [[-s, s, 0], [0, 0, 0], [-2, -2, -2]], rtol=1e-6, atol=1e-6)


def hand_batch() -> tuple[np.ndarray, np.ndarray]:
    """4 rows of lengths 3, 0 (emptied by truncation masking), 2, 1; every token's loss 1."""
    mask = np.zeros((4, 5), np.float32)
    for i, n in enumerate([3, 0, 2, 1]):
        mask[i, 1: 1 + n] = 1
    return mask, np.ones_like(mask)


@pytest.mark.parametrize("mode, want", [
    ("seq-mean-token-sum-norm", 6 / (3 * 4)),  # ours: 3 sequences with a token x L
    ("seq-mean-token-sum-norm-verl", 6 / 4),  # verl: the token sum / L, no batch division
    ("dr-grpo-trl", 6 / (4 * 4)),  # TRL dr_grpo: all 4 rows x L, the empty one too
])
def test_length_normalized_divisors_on_one_batch_and_in_micro_batches(mode, want):
    """6 tokens, L = 4. Split into two micro-batches of 2 rows (sums and counts added, one
    division, as the train step does) the loss is the same."""
    mask, loss = hand_batch()
    agg = aggregation.get(mode)
    weights, count = agg(jnp.asarray(mask), 4.0, 4.0)
    assert float((weights * loss).sum() / count) == pytest.approx(want)
    parts = [agg(jnp.asarray(mask[i: i + 2]), 4.0, 4.0) for i in (0, 2)]
    total = sum(float((w * loss[:2]).sum()) for w, _ in parts)
    assert total / sum(float(c) for _, c in parts) == pytest.approx(want)


def test_norm_length_defaults_to_the_generation_budget_in_the_batch():
    """RLLoss.norm_length None reads the batch's max_new_tokens (the RL learner puts it there)
    and its mini_batch_rows; a set norm_length wins; with neither the loss says what to set."""
    mask, _ = hand_batch()
    batch = loss_batch(mask, max_new_tokens=4, mini_batch_rows=8)
    m = jnp.asarray(mask)
    assert RLLoss().norm_length is None
    norm, rows = norm_inputs(batch, m, RLLoss())
    assert (float(norm), float(rows)) == (4.0, 8.0)
    # these 4 rows are half of an 8-row mini-batch: half of verl's L, all 4 rows for TRL's
    assert float(aggregation.get("seq-mean-token-sum-norm-verl")(m, norm, rows)[1]) == 2.0
    assert float(aggregation.get("dr-grpo-trl")(m, norm, rows)[1]) == 16.0
    norm, rows = norm_inputs(loss_batch(mask), m, RLLoss(norm_length=6.0))
    assert (norm, rows) == (6.0, 4.0)
    norm, rows = norm_inputs(loss_batch(mask), m, RLLoss())
    assert float(aggregation.get("token-mean")(m, norm, rows)[1]) == 6.0  # needs no L
    with pytest.raises(ConfigError, match="RLLoss.norm_length"):
        aggregation.get("dr-grpo-trl")(m, norm, rows)


def test_value_loss_is_clipped_like_ppo():
    pred, old, ret = np.array([1.0, 0.0, 0.5]), np.array([0.0, 0.0, 0.45]), np.array([2.0, 1.0,
                                                                                     0.0])
    loss, frac = value_loss(jnp.asarray(pred), jnp.asarray(old), jnp.asarray(ret), 0.2)
    clipped = old + np.clip(pred - old, -0.2, 0.2)
    want = 0.5 * np.maximum((pred - ret) ** 2, (clipped - ret) ** 2)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    np.testing.assert_array_equal(frac, [1.0, 0.0, 0.0])


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("mode", sorted(aggregation.MODES))
def test_each_aggregation_matches_numpy(mode):
    """The full loss (policy gradient + k3 KL - entropy bonus) aggregated like verl's agg_loss,
    with seq-mean-token-sum-norm over a constant length."""
    b, t, v = 5, 8, 7
    logits = RNG.normal(size=(b, t, v))
    tokens = RNG.integers(0, v, size=(b, t))
    mask = np.zeros((b, t))
    for i, (start, end) in enumerate([(2, 8), (3, 5), (1, 8), (4, 6), (0, 0)]):
        mask[i, start:end] = 1  # row 4 has no completion token: it counts for nothing
    temp = 0.8
    logp_all = np_log_softmax(logits[:, :-1] / temp)
    logp = np.pad(np.take_along_axis(logp_all, tokens[:, 1:, None], -1)[..., 0], ((0, 0), (1, 0)))
    ent = np.pad(-(np.exp(logp_all) * logp_all).sum(-1), ((0, 0), (1, 0)))
    old = logp + RNG.normal(size=(b, t)) * 0.2
    ref = logp + RNG.normal(size=(b, t)) * 0.3
    adv = RNG.normal(size=(b, t))
    batch = loss_batch(mask, old_logprobs=old, advantages=adv, ref_logprobs=ref,
                       temperature=temp)
    cfg = RLLoss(aggregation=mode, norm_length=12.0, eps_high=0.28, kl_coef=0.1,
                 entropy_coef=0.01)
    fwd = Forward(jnp.asarray(tokens), jnp.asarray(logits, jnp.float32), None)
    total, count, metrics = cfg(fwd, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), batch))
    r = ref - logp
    per_token = (np_clip_loss(logp, old, adv, 0.2, 0.28) + 0.1 * (np.exp(r) - r - 1)
                 - 0.01 * ent)
    seqs = mask.any(1)
    token_sums = (per_token * mask).sum(1)[seqs]
    want = {
        "token-mean": (per_token * mask).sum() / mask.sum(),
        "seq-mean-token-sum": token_sums.mean(),
        "seq-mean-token-mean": (token_sums / mask.sum(1)[seqs]).mean(),
        "seq-mean-token-sum-norm": token_sums.sum() / (seqs.sum() * 12.0),
        "seq-mean-token-sum-norm-verl": token_sums.sum() / 12.0,
        "dr-grpo-trl": token_sums.sum() / (b * 12.0),  # the empty row 4 counts
    }[mode]
    np.testing.assert_allclose(float(total / count), want, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["entropy"][0] / metrics["entropy"][1]),
                               (ent * mask).sum() / mask.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["ratio_max"][0]),
                               np.exp(logp - old)[mask > 0].max(), rtol=1e-5)


def test_entropy_ignores_tokens_outside_the_distribution():
    logp = jnp.log(jnp.array([[0.5, 0.5, 0.0]]))
    np.testing.assert_allclose(entropy(logp), [np.log(2)], rtol=1e-6)


def test_bad_loss_settings_are_config_errors():
    for kw, name in ((dict(policy_loss="nope"), "policy loss"), (dict(aggregation="x"), "agg"),
                     (dict(kl_estimator="k9"), "KL"), (dict(dual_clip=0.5), "dual_clip"),
                     (dict(eps_low=1.5), "eps_low")):
        with pytest.raises((ConfigError, Exception), match=name):
            RLLoss(**kw)


# ---- the same step on 1 and 8 devices, with 1 and 4 micro-batches --------------------------
MESHES = {"one": None, "data": dict(data=8), "mixed": dict(data=2, fsdp=2, tensor=2)}


@functools.cache
def trainer(mesh: str, accum: int, mode: str) -> Trainer:
    spec = MESHES[mesh]
    devices = jax.devices()[:1] if spec is None else None
    loss = RLLoss(aggregation=mode, kl_coef=0.05, entropy_coef=0.01, dual_clip=3.0,
                  norm_length=16.0)
    return Trainer(TINY, make_optimizer(learning_rate=1e-2, warmup_steps=1),
                   parallel.make_mesh(**(spec or {}), devices=devices), loss=loss,
                   grad_accum=accum, reference=True)


def rl_batch(rows: int = 32, seq: int = 16) -> dict[str, np.ndarray]:
    """Rows of different prompt and completion lengths (micro-batches hold unequal token and
    sequence counts), old log-probs off the policy's, random advantages and a reference."""
    rng = np.random.default_rng(1)
    examples = []
    for i in range(rows):
        prompt, length = 2 + i % 3, 4 + (7 * i) % 11
        ids = rng.integers(3, TINY.vocab_size, length)
        examples.append(Example(tuple(ids[:prompt]), tuple(ids[prompt:])))
    batch = make_batch(examples, seq, pad_id=0)
    batch["loss_mask"][5] = 0  # a row with nothing to train
    mask = batch["loss_mask"] > 0
    noise = lambda s: (rng.normal(size=mask.shape) * s * mask).astype(np.float32)  # noqa: E731
    batch.update(loss_mask=batch["loss_mask"].astype(np.float32), advantages=noise(1.0),
                 noise=noise(0.3), ref_noise=noise(0.5))
    return batch


def one_step(mesh: str, accum: int, mode: str):
    tr = trainer(mesh, accum, mode)
    state = tr.reset_optimizer({"params": jax.device_put(init_params(TINY),
                                                         tr.params_shardings)})
    fields = rl_batch()
    lp = np.asarray(tr.logprobs(state["params"], fields, 0.9))
    noise, ref_noise = fields.pop("noise"), fields.pop("ref_noise")
    batch = RLBatch(**fields, old_logprobs=lp + noise, ref_logprobs=lp + ref_noise,
                    temperature=0.9)
    state, metrics = tr.train_step(state, batch, 1e-2)
    return jax.device_get(metrics), jax.device_get(state["params"]), lp, batch


def test_rl_step_is_the_same_on_1_and_8_devices_and_4_micro_batches(devices):
    # seq-mean-token-mean is the mode whose normalizer (tokens per sequence, sequences in the
    # global batch) a per-micro-batch mean would get wrong.
    mode = "seq-mean-token-mean"
    ref_metrics, ref_params, lp, batch = one_step("one", 1, mode)
    mask = batch["loss_mask"] > 0
    # ratio_max is the GLOBAL max: pi / pi_old = exp(-noise) at the trainable tokens
    np.testing.assert_allclose(ref_metrics["ratio_max"],
                               np.exp(lp - batch["old_logprobs"])[mask].max(), rtol=1e-5)
    for mesh, accum in (("one", 4), ("data", 1), ("data", 4), ("mixed", 2)):
        metrics, params, _, _ = one_step(mesh, accum, mode)
        assert metrics.keys() == ref_metrics.keys()
        for k in metrics:
            np.testing.assert_allclose(metrics[k], ref_metrics[k], rtol=3e-5, atol=1e-7,
                                       err_msg=f"{k} on {mesh} x{accum}")
        # Adam's first step is ~lr * sign(g): the rounding of a reordered sum can move a
        # near-zero gradient entry's step by up to 2 lr, i.e. ~2 / sqrt(#params) = 1e-2 of the
        # update's norm per flipped sign (on some CPUs), so the claim checked here is the step
        # as a whole (seen here: 5e-6; the loss and grad_norm above are the sharp test)
        update = lambda p: np.concatenate([  # noqa: E731
            (np.asarray(x) - np.asarray(x0)).ravel() for x, x0 in
            zip(jax.tree.leaves(p), jax.tree.leaves(jax.device_get(init_params(TINY))),
                strict=True)])
        got, want = update(params), update(ref_params)
        rel = np.linalg.norm(got - want) / np.linalg.norm(want)
        assert rel < 3e-2, f"the update on {mesh} x{accum} differs by {rel:.2e} of its norm"


def test_gradients_are_finite_with_banned_ids_and_padding():
    """The trainer bans pad and BOS (their log-probs are -inf) and pads rows with the pad id:
    neither the masked targets nor the entropy of the banned ids may turn the gradient into
    nan, even with every coefficient 0 (0 * nan is nan)."""
    b, t, v = 3, 6, 5
    tokens = np.array([[1, 2, 3, 0, 0, 0], [1, 3, 3, 2, 0, 0], [1, 4, 2, 3, 4, 0]])
    mask = (tokens > 0).astype(np.float32)
    mask[:, 0] = 0
    batch = loss_batch(mask, old_logprobs=np.full((b, t), -1.5) * mask,
                       advantages=RNG.normal(size=(b, t)) * mask, ref_logprobs=np.zeros((b, t)))
    batch = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), batch)
    banned = jnp.zeros(v, bool).at[0].set(True)

    def loss(logits):
        fwd = Forward(jnp.asarray(tokens), logits, None, banned)
        total, count, metrics = policy_gradient_loss(fwd, batch, RLLoss(kl_coef=0.0))
        return total / count, metrics

    logits = jnp.asarray(RNG.normal(size=(b, t, v)), jnp.float32)
    grad, metrics = jax.grad(loss, has_aux=True)(logits)
    assert np.isfinite(np.asarray(grad)).all()
    for name, (num, _) in metrics.items():
        assert np.isfinite(float(num)), name
