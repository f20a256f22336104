"""The learner's stability machinery: dynamic sampling drops all-equal groups and refills, the
ProRL reset schedule, hard resets replace the reference (and the optimizer state when set),
soft sync mixes the reference, and a learner step trains only finished completions."""

import functools
import types

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY, forward, init_params

from jaxrl_reason import parallel
from jaxrl_reason.data.chain import ChainTask
from jaxrl_reason.data.tasks import Check
from jaxrl_reason.errors import ConfigError
from jaxrl_reason.named import Named
from jaxrl_reason.rl import advantages as adv_lib
from jaxrl_reason.rl import dynamic, reference
from jaxrl_reason.rl.batch import RLBatch
from jaxrl_reason.rl.learner import Learner, LearnerConfig
from jaxrl_reason.rl.loop import start_state
from jaxrl_reason.rl.objective import RLLoss, policy_gradient_loss
from jaxrl_reason.rl.rewards import Combined
from jaxrl_reason.rollouts import Rollouts
from jaxrl_reason.training.checkpoints import Checkpointer
from jaxrl_reason.training.losses import Forward
from jaxrl_reason.training.optim import make_optimizer
from jaxrl_reason.training.trainer import Trainer

TASK = ChainTask(min_steps=1, max_steps=1)


def fake_rollouts(outcomes, group_size, first_problem=0, finished=None, length=5):
    """Groups of `group_size` rows with the given outcome rewards; ids are arbitrary."""
    n = len(outcomes)
    problems = [TASK.problem(1 + (first_problem + i // group_size) % 20, (("+", 1),))
                for i in range(n)]
    rng = np.random.default_rng(first_problem)
    completion = [tuple(int(t) for t in rng.integers(3, TINY.vocab_size, length))
                  for _ in range(n)]
    ro = Rollouts(TASK, problems, [(1, 5, 6)] * n, completion, [""] * n,
                  np.ones(n, bool) if finished is None else np.asarray(finished),
                  [Check(None, bool(o)) for o in outcomes], [[length - 1]] * n,
                  np.repeat(np.arange(n // group_size), group_size),
                  [np.full(length, -1.0, np.float32)] * n, length)
    return ro, Combined(np.asarray(outcomes, float), [np.full(1, np.nan)] * n, {})


def test_dynamic_sampling_drops_all_equal_groups_and_refills():
    # round 0: 4 groups, two all-equal ([1,1], [0,0]); round 1: 2 groups, one informative
    rounds = [[1, 0, 1, 1, 0, 0, 0, 1], [0, 0, 1, 0]]
    calls = []

    def sample(round_, n):
        calls.append(n)
        return fake_rollouts(rounds[round_], 2, first_problem=10 * round_)

    got = dynamic.collect(sample, groups=3, enabled=True, max_rounds=4)
    assert calls == [3, 1]  # asks for what is still missing
    assert got.rounds == 2 and got.groups_sampled == 6 and got.groups_uniform == 3
    np.testing.assert_array_equal(got.combined.outcome, [1, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(got.rollouts.group, [0, 0, 1, 1, 2, 2])  # renumbered
    assert got.rollouts.problems[4] == sample(1, 1)[0].problems[2]  # round 1's second group


def test_dynamic_sampling_stops_at_the_cap_and_off_keeps_everything():
    uniform = lambda r, n: fake_rollouts([1] * (2 * n), 2)  # noqa: E731
    got = dynamic.collect(uniform, groups=2, enabled=True, max_rounds=3)
    assert got.rounds == 3 and len(got.rollouts) == 0 and got.groups_uniform == 6
    off = dynamic.collect(uniform, groups=2, enabled=False, max_rounds=3)
    assert off.rounds == 1 and len(off.rollouts) == 4


def test_reset_schedule_patience_and_period():
    s = reference.ResetSchedule(patience=2)
    due = []
    for step, metric in enumerate([0.3, 0.5, 0.4, 0.5, 0.6, 0.6, 0.6], start=1):
        s.observe(metric)
        if s.due(step):
            s.record(step)
            due.append(step)
    assert due == [4, 7]  # two evaluations without beating 0.5, then without beating 0.6
    restored = reference.ResetSchedule(patience=2)
    restored.set_state(s.get_state())
    assert restored.get_state() == s.get_state() == {"best": 0.6, "stale": 0, "history": [4, 7]}
    every = reference.ResetSchedule(every=3)
    assert [t for t in range(1, 10) if every.due(t)] == [3, 6, 9]
    with pytest.raises(ConfigError, match="reset_patience"):
        reference.ResetSchedule(patience=-1)


@functools.cache
def trainer() -> Trainer:
    return Trainer(TINY, make_optimizer(learning_rate=1e-2, warmup_steps=0),
                   parallel.make_mesh(devices=jax.devices()[:1]), loss=RLLoss(), reference=True)


def trained_state():
    """A state one update away from its reference, with non-zero Adam moments."""
    tr = trainer()
    state = tr.reset_optimizer({"params": init_params(TINY)})
    ro, comb = fake_rollouts([1, 0, 0, 1, 1, 0, 1, 1], 2)
    learner = Learner(LearnerConfig(prompts_per_step=4, group_size=2, max_new_tokens=5,
                                    seq_bucket=8), tr, pad_id=0)
    state, _ = learner.step(state, ro, comb, np.full(4, 1e-2), 1, 0)
    return tr, state


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def test_hard_reset_replaces_the_reference_and_the_optimizer_state():
    tr, state = trained_state()
    params, ref = leaves(state["params"]), leaves(state["ref_params"])
    assert any(not np.array_equal(p, r) for p, r in zip(params, ref, strict=True))
    moments = leaves(state["opt_state"])
    assert any(np.abs(m).sum() > 0 for m in moments)

    kept = reference.hard_reset(tr, state, reset_optimizer=False)
    for p, r in zip(params, leaves(kept["ref_params"]), strict=True):
        np.testing.assert_array_equal(p, r)  # reference <- policy
    for a, b in zip(moments, leaves(kept["opt_state"]), strict=True):
        np.testing.assert_array_equal(a, b)  # optimizer untouched

    reset = reference.hard_reset(tr, kept, reset_optimizer=True)
    fresh = leaves(tr.optimizer.tx.init(state["params"]))
    for a, b in zip(leaves(reset["opt_state"]), fresh, strict=True):
        np.testing.assert_array_equal(a, b)  # moments and count restarted
    for p, q in zip(params, leaves(reset["params"]), strict=True):
        np.testing.assert_array_equal(p, q)  # the policy itself is kept


def test_soft_sync_moves_the_reference_part_way():
    tr, state = trained_state()
    params, ref = leaves(state["params"]), leaves(state["ref_params"])
    synced = reference.soft_sync(tr, state, 0.25)
    for p, r, s in zip(params, ref, leaves(synced["ref_params"]), strict=True):
        np.testing.assert_allclose(s, 0.25 * p + 0.75 * r, rtol=1e-6, atol=1e-7)


def one_truncated_row():
    """(trainer, a fresh state, 4 groups of 2 rollouts with row 1 truncated, a learner config
    that masks truncated rows)."""
    tr = trainer()
    state = tr.reset_optimizer({"params": init_params(TINY)})
    ro, comb = fake_rollouts([1, 0, 0, 1, 1, 0, 1, 1], 2,
                             finished=[True, False, True, True, True, True, True, True])
    cfg = LearnerConfig(prompts_per_step=4, group_size=2, max_new_tokens=5, seq_bucket=8,
                        mask_truncated=True)
    return tr, state, ro, comb, cfg


def test_learner_step_masks_truncated_completions_and_reports():
    tr, state, ro, comb, cfg = one_truncated_row()
    learner = Learner(cfg, tr, pad_id=0)
    assert learner.batch(ro, comb).tokens.shape == (8, 8)  # 3 prompt + 5 completion tokens
    _, metrics = learner.step(state, ro, comb, np.full(4, 1e-2), 1, 0)
    assert metrics["train_tokens"] == 7 * 5  # the truncated row trains nothing
    # by default truncated rows train (the format reward penalizes them instead)
    default = Learner(LearnerConfig(prompts_per_step=4, group_size=2, max_new_tokens=5,
                                    seq_bucket=8), tr, pad_id=0)
    state = tr.reset_optimizer({"params": init_params(TINY)})  # the step donated the last
    assert default.step(state, ro, comb, np.full(4, 1e-2), 1, 0)[1]["train_tokens"] == 8 * 5
    assert metrics["truncated_frac"] == 1 / 8
    # the sampler's made-up log-probs (-1) against the trainer's: the gap is reported
    assert metrics["logprob_gap_mean"] > 0 and metrics["updates"] == 1
    for key in ("train/entropy", "train/clip_low", "train/clip_high", "train/ratio_mean",
                "train/ratio_max", "adv_std", "response_len_max", "time/update"):
        assert np.isfinite(metrics[key]), key


def test_learner_config_errors_name_the_binding():
    tr = trainer()
    with pytest.raises(ConfigError, match="group_size"):
        LearnerConfig(group_size=1)
    with pytest.raises(ConfigError, match="mini_batches"):
        Learner(LearnerConfig(prompts_per_step=3, group_size=2, mini_batches=4), tr, 0)
    with pytest.raises(ConfigError, match="value_head"):
        no_head = Trainer(TINY.__class__(**{**TINY.__dict__, "value_head": False}),
                          make_optimizer(), tr.mesh, loss=RLLoss())
        Learner(LearnerConfig(advantage="gae"), no_head, 0)


def test_a_truncating_sampler_is_refused_in_rl():
    """gin's SamplingConfig.top_k / top_p reach the rollout sampler, while pi_old and the loss
    use the full distribution: the combination is refused with one line."""
    with gin.unlock_config():
        gin.bind_parameter("SamplingConfig.top_k", 5)
    with pytest.raises(ConfigError, match="top_k"):
        Learner(LearnerConfig(prompts_per_step=4, group_size=2), trainer(), pad_id=0)
    with gin.unlock_config():
        gin.bind_parameter("SamplingConfig.top_k", 0)
        gin.bind_parameter("SamplingConfig.top_p", 0.9)
    with pytest.raises(ConfigError, match="top_p"):
        LearnerConfig().sampling()


def test_the_critic_starts_at_zero_from_a_checkpoint_without_one(tmp_path):
    """rl.start_state fills a value head the SFT checkpoint lacks with zeros (not random
    weights), so PPO's first values are 0 and its first advantages the rewards' own."""
    no_head = TINY.__class__(**{**TINY.__dict__, "value_head": False})
    sft = Trainer(no_head, make_optimizer(), parallel.make_mesh(devices=jax.devices()[:1]))
    ckpt = Checkpointer(tmp_path / "checkpoints")
    ckpt.save(3, sft.init(0), {"step": 3}, force=True)
    ckpt.close()
    setup = types.SimpleNamespace(trainer=trainer(), model_cfg=TINY, pretrained=None)
    state = start_state(setup, str(tmp_path), None, seed=0)
    np.testing.assert_array_equal(np.asarray(state["params"]["value_head"][...]), 0.0)
    for a, b in zip(leaves(sft.init(0)["params"]),
                    leaves({k: v for k, v in state["params"].items() if k != "value_head"}),
                    strict=True):
        np.testing.assert_array_equal(a, b)  # the policy is the checkpoint's


def test_log_prob_passes_in_chunks_match_one_pass():
    tr = trainer()
    params = tr.reset_optimizer({"params": init_params(TINY)})["params"]
    ro, comb = fake_rollouts([1, 0, 0, 1, 1, 0, 1, 1], 2)
    learner = Learner(LearnerConfig(prompts_per_step=4, group_size=2, max_new_tokens=5,
                                    seq_bucket=8, mini_batches=2), tr, pad_id=0)
    batch = learner.batch(ro, comb).model_inputs()
    whole = np.asarray(tr.logprobs(params, batch, 0.9))
    chunked = learner.per_chunk(lambda b: tr.logprobs(params, b, 0.9), batch)
    assert (whole != 0).sum() == 8 * 5
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def np_target_logprobs(params, tokens: np.ndarray, temperature: float) -> np.ndarray:
    """[B, T] log p(token t | tokens < t) at `temperature` from the model's logits, in plain
    numpy (log-softmax of logits / T; entry 0 is 0)."""
    z = np.asarray(forward(params, tokens)[0], np.float64)[:, :-1] / temperature
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    lp = np.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
    return np.pad(lp, ((0, 0), (1, 0)))


def captured_step(learner: Learner, state, ro, comb) -> RLBatch:
    """The training batch a learner step hands its updates (the updates themselves skipped)."""
    seen = []

    def update(state, train, rates, step, seed):
        seen.append(train)
        return state, {}

    learner.update = update
    learner.step(state, ro, comb, np.full(4, 1e-2), 1, 0)
    return seen[0]


def test_kl_reward_lowers_the_advantage_of_rows_far_from_a_different_reference():
    """Policy and reference with different params, KL as a reward (k1, coefficient .02):
    pi_old and the reference's log-probs are each model's own (numpy log-softmax of its
    logits / T), and each row's reward is its outcome - .02 x sum_t (log pi_old - log ref),
    normalized per group by GRPO. In the group of four equal outcomes the advantage is the
    KL's alone: the row furthest from the reference gets the lowest."""
    tr = trainer()
    policy = jax.tree.map(lambda x: 2.0 * x, init_params(TINY))
    ref = jax.tree.map(lambda x: 2.0 * x, init_params(TINY, 1))
    state = tr.reset_optimizer({"params": policy, "ref_params": ref})
    outcomes = [1, 1, 0, 0, 1, 1, 1, 1]
    ro, comb = fake_rollouts(outcomes, 4)
    cfg = LearnerConfig(prompts_per_step=2, group_size=4, max_new_tokens=5, seq_bucket=8,
                        temperature=0.7, kl_in_reward=0.02, kl_reward_estimator="k1")
    learner = Learner(cfg, tr, pad_id=0)
    train = captured_step(learner, state, ro, comb)

    tokens = train["tokens"]
    mask = train["loss_mask"] > 0
    assert mask.sum() == 8 * 5
    old, ref_lp = np_target_logprobs(policy, tokens, 0.7), np_target_logprobs(ref, tokens, 0.7)
    assert np.abs(old - ref_lp)[mask].min() > 1e-3  # the two models differ on every token
    np.testing.assert_allclose(train["old_logprobs"][mask], old[mask], atol=2e-5)
    np.testing.assert_allclose(train["ref_logprobs"][mask], ref_lp[mask], atol=2e-5)

    kl_sum = ((old - ref_lp) * mask).sum(1)
    reward = np.asarray(outcomes, float) - 0.02 * kl_sum
    want = np.zeros(8)
    for g in (slice(0, 4), slice(4, 8)):
        want[g] = (reward[g] - reward[g].mean()) / (reward[g].std(ddof=1) + 1e-6)
    got = np.array([train["advantages"][i][mask[i]] for i in range(8)])
    np.testing.assert_allclose(got, np.repeat(want[:, None], 5, 1), rtol=1e-4, atol=1e-4)
    assert np.argmin(got[4:, 0]) == np.argmax(kl_sum[4:])
    assert np.ptp(kl_sum[4:]) > 5  # the KL spreads the equal outcomes apart


def test_the_learner_batch_carries_what_the_length_normalized_aggregations_need():
    """The generation budget (L when RLLoss.norm_length is None) and the mini-batch's rows
    reach the loss: with one truncated row masked out, ours divides by 7 sequences x 5,
    TRL's dr_grpo by all 8 rows x 5, verl's by L = 5 alone."""
    tr, state, ro, comb, cfg = one_truncated_row()
    train = captured_step(Learner(cfg, tr, pad_id=0), state, ro, comb)
    batch = jax.tree.map(jnp.asarray, train)
    fwd = Forward(batch.tokens, forward(init_params(TINY), train.tokens)[0], None)
    for mode, count in (("seq-mean-token-sum-norm", 35), ("dr-grpo-trl", 40),
                        ("seq-mean-token-sum-norm-verl", 5)):
        _, got, _ = policy_gradient_loss(fwd, batch, RLLoss(aggregation=mode))
        assert float(got) == count, mode


@pytest.mark.parametrize("advantage", ["grpo", "process", "rloo"])
def test_learner_steps_make_rewarded_completions_more_likely(advantage):
    """Learning, not equivalence: rows of each group whose completion is 'right' (reward 1)
    gain log-probability over a few steps and the others lose it. A sign flipped anywhere
    between the rewards and the update (advantages, the clipped objective, the aggregation)
    fails this."""
    tr = trainer()
    state = tr.reset_optimizer({"params": init_params(TINY)})
    ro, comb = fake_rollouts([1, 0] * 4, 2)
    learner = Learner(LearnerConfig(prompts_per_step=4, group_size=2, max_new_tokens=5,
                                    seq_bucket=8, advantage=advantage), tr, pad_id=0)
    batch = learner.batch(ro, comb).model_inputs()

    def seq_logp(params):
        return np.asarray(tr.logprobs(params, batch, 1.0)).sum(axis=1)

    before = seq_logp(state["params"])
    for step in range(1, 4):
        state, _ = learner.step(state, ro, comb, np.full(3, 3e-3), step, 0)
    change = seq_logp(state["params"]) - before
    assert np.all(change[0::2] > 0.05) and np.all(change[1::2] < -0.05), change


def test_a_new_estimator_is_one_registered_function(monkeypatch):
    """Adding an advantage estimator takes one function with `@advantages.register`: the
    learner picks it by name, refuses groups of one when it is `grouped`, and trains on what
    it returns (here: each row's outcome minus its group's best, on every completion token)."""
    monkeypatch.setattr(adv_lib, "ESTIMATORS", Named("advantage estimator"))
    monkeypatch.setattr(adv_lib, "GROUPED", set())

    @adv_lib.register("minus_best", grouped=True)
    def minus_best(x: RLBatch) -> adv_lib.Advantages:
        best = {g: x.outcome[x.group == g].max() for g in np.unique(x.group)}
        per_row = x.outcome - np.array([best[g] for g in x.group])
        return adv_lib.Advantages(per_row[:, None] * x.mask)

    tr = trainer()
    state = tr.reset_optimizer({"params": init_params(TINY)})
    ro, comb = fake_rollouts([1, 0, 0, 0, 1, 1, 0, 1], 2)
    cfg = LearnerConfig(prompts_per_step=4, group_size=2, max_new_tokens=5, seq_bucket=8,
                        advantage="minus_best")
    train = captured_step(Learner(cfg, tr, pad_id=0), state, ro, comb)
    got = (train["advantages"] * train["loss_mask"]).sum(axis=1) / 5  # 5 completion tokens
    np.testing.assert_allclose(got[:8], [0, -1, 0, 0, 0, 0, -1, 0])
    with pytest.raises(ConfigError, match="group_size"):
        LearnerConfig(prompts_per_step=4, group_size=1, advantage="minus_best")
