"""Each advantage estimator against a hand-computed example (numbers worked out in the
comments), and the group requirements they state."""

import dataclasses

import numpy as np
import pytest

from jaxrl_reason.errors import UserError
from jaxrl_reason.rl import advantages as adv
from jaxrl_reason.rl.batch import RLBatch
from jaxrl_reason.rl.learner import shift_values


def rewarded(outcomes, group, length=3, prompt=1, steps=None, values=None,
             token_rewards=None) -> RLBatch:
    """Rows of `prompt` prompt tokens then `length` completion tokens (T = prompt + length + 1:
    one pad column); `steps`: per row (token positions, step rewards)."""
    n = len(outcomes)
    mask = np.zeros((n, prompt + length + 1))
    mask[:, prompt: prompt + length] = 1
    step_rewards, step_rewarded = np.zeros(mask.shape), np.zeros(mask.shape, bool)
    for i, (pos, val) in enumerate(steps or []):
        step_rewards[i, pos], step_rewarded[i, pos] = val, True
    return RLBatch(tokens=np.zeros(mask.shape, int), input_mask=mask > 0,
                   positions=np.zeros(mask.shape, int), loss_mask=mask, completion_mask=mask,
                   group=np.asarray(group), outcome=np.asarray(outcomes, float),
                   step_rewards=step_rewards, step_rewarded=step_rewarded,
                   old_values=values, token_rewards=token_rewards)


def completion(a: np.ndarray, prompt=1, length=3) -> np.ndarray:
    """Each row's advantages on its completion tokens, and a check that the rest are 0."""
    outside = np.ones(a.shape[1], bool)
    outside[prompt: prompt + length] = False
    assert np.all(a[:, outside] == 0)
    return a[:, prompt: prompt + length]


def test_grpo_group_mean_and_sample_std():
    # group 0: [1, 0, 0, 1]: mean .5, std(ddof=1) = sqrt(4 * .25 / 3) = sqrt(1/3) -> +-0.8660
    # group 1: [1, 0, 0, 0]: mean .25, var = (.5625 + 3 * .0625) / 3 = .25, std .5 -> 1.5, -.5
    x = rewarded([1, 0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1])
    a = completion(adv.grpo(x, eps=0.0).advantages)
    s = np.sqrt(3) / 2
    np.testing.assert_allclose(a[:, 0], [s, -s, -s, s, 1.5, -0.5, -0.5, -0.5], rtol=1e-12)
    assert np.all(a == a[:, :1])  # the same advantage on every token of a row
    # eps is added to the std: an all-equal group gets exactly 0, not nan
    assert np.all(adv.grpo(rewarded([1, 1], [0, 0])).advantages == 0)


def test_dr_grpo_subtracts_the_mean_only():
    x = rewarded([1, 0, 0, 0], [0, 0, 0, 0])
    np.testing.assert_allclose(completion(adv.dr_grpo(x).advantages)[:, 0],
                               [0.75, -0.25, -0.25, -0.25])


def test_rloo_leaves_one_out():
    # [1, 0, 0, 0]: 1 - mean(0, 0, 0) = 1; 0 - mean(1, 0, 0) = -1/3
    x = rewarded([1, 0, 0, 0], [0, 0, 0, 0])
    np.testing.assert_allclose(completion(adv.rloo(x).advantages)[:, 0],
                               [1, -1 / 3, -1 / 3, -1 / 3])


def test_reinforce_pp_discounts_then_whitens_over_the_batch():
    # gamma .5, outcome at the last token: returns row 0 [.25, .5, 1], row 1 [0, 0, 0];
    # over the 6 tokens mean 1.75/6, unbiased var = (sum r^2 - 6 mean^2) / 5
    x = rewarded([1, 0], [0, 1])
    out = adv.reinforce_pp(x, gamma=0.5)
    np.testing.assert_allclose(completion(out.returns), [[0.25, 0.5, 1], [0, 0, 0]])
    r = np.array([0.25, 0.5, 1, 0, 0, 0])
    mean, var = 1.75 / 6, (1.3125 - 6 * (1.75 / 6) ** 2) / 5
    np.testing.assert_allclose(completion(out.advantages).ravel(),
                               (r - mean) / np.sqrt(var + 1e-8), rtol=1e-10)


def test_reinforce_pp_baseline_subtracts_the_group_mean_then_whitens():
    # groups [1, 0] and [1, 1]: r - mean = [.5, -.5, 0, 0] on 3 tokens each; batch mean 0,
    # unbiased var over 12 tokens = 6 * .25 / 11
    x = rewarded([1, 0, 1, 1], [0, 0, 1, 1])
    a = completion(adv.reinforce_pp_baseline(x).advantages)
    z = 0.5 / np.sqrt(1.5 / 11 + 1e-8)
    np.testing.assert_allclose(a[:, 0], [z, -z, 0, 0], rtol=1e-10)


def test_process_normalizes_outcomes_and_steps_apart_and_sums_the_future():
    # 2 prompt tokens, completion at positions 2..5, steps end at 3 and 5, outcome at 5.
    # row 0: steps [1, 0], outcome 0; row 1: steps [1, 1], outcome 1.
    # outcomes [0, 1]: mean .5, std(ddof=1) sqrt(.5) -> -+ .5 / sqrt(.5) = -+ sqrt(.5)
    # steps [1, 0, 1, 1]: mean 3/4, std(ddof=1) sqrt((3 * 1/16 + 9/16) / 3) = .5
    #   -> z(1) = .5, z(0) = -1.5
    x = rewarded([0, 1], [0, 0], length=4, prompt=2,
                 steps=[([3, 5], [1, 0]), ([3, 5], [1, 1])])
    a = completion(adv.process(x, eps=0.0).advantages, prompt=2, length=4)
    o = np.sqrt(0.5)
    # token t: its row's outcome + the step events at positions >= t (tokens 2, 3 see both
    # steps, tokens 4, 5 the second)
    np.testing.assert_allclose(a[0], [-o + 0.5 - 1.5, -o + 0.5 - 1.5, -o - 1.5, -o - 1.5],
                               rtol=1e-12)
    np.testing.assert_allclose(a[1], [o + 1.0, o + 1.0, o + 0.5, o + 0.5], rtol=1e-12)
    # step_weight scales the step part only
    b = completion(adv.process(x, eps=0.0, step_weight=0.5).advantages, prompt=2, length=4)
    np.testing.assert_allclose(b[1], [o + 0.5, o + 0.5, o + 0.25, o + 0.25], rtol=1e-12)


def test_process_a_right_answer_never_lowers_its_tokens_when_steps_beat_outcomes():
    """Step accuracy 11/12 against outcome accuracy 1/4 (the regime where one pooled mean put
    every answer line below zero). 4 rows, 3 steps each ending at 1, 3, 5; the answer line is
    tokens 6-7 with the outcome at 7. Rows 0-2 are wrong with all steps right except row 2's
    last; row 3 is right.
    outcomes [0, 0, 0, 1]: mean 1/4, std(ddof=1) = .5 -> [-.5, -.5, -.5, 1.5]
    steps: eleven 1s and one 0: mean 11/12, std(ddof=1) = sqrt((11/144 + 121/144) / 11)
    = sqrt(1/12) -> z(1) = (1/12) / sqrt(1/12) = sqrt(1/12), z(0) = -(11/12) / sqrt(1/12)."""
    steps = [([1, 3, 5], [1, 1, 1])] * 2 + [([1, 3, 5], [1, 1, 0]), ([1, 3, 5], [1, 1, 1])]
    x = rewarded([0, 0, 0, 1], [0, 0, 0, 0], length=8, prompt=0, steps=steps)
    a = completion(adv.process(x, eps=0.0).advantages, prompt=0, length=8)
    hi, lo = np.sqrt(1 / 12), -(11 / 12) / np.sqrt(1 / 12)
    # the answer line (tokens 6, 7) carries the normalized outcome alone
    np.testing.assert_allclose(a[:, 6:], [[-0.5] * 2] * 3 + [[1.5] * 2], rtol=1e-12)
    np.testing.assert_allclose(a[3], [1.5 + 3 * hi] * 2 + [1.5 + 2 * hi] * 2
                               + [1.5 + hi] * 2 + [1.5] * 2, rtol=1e-12)
    np.testing.assert_allclose(a[2, :6], [-0.5 + 2 * hi + lo] * 2 + [-0.5 + hi + lo] * 2
                               + [-0.5 + lo] * 2, rtol=1e-12)
    # flipping a wrong row to right raises every one of its tokens' advantages
    flipped = rewarded([1, 0, 0, 1], [0, 0, 0, 0], length=8, prompt=0, steps=steps)
    b = completion(adv.process(flipped, eps=0.0).advantages, prompt=0, length=8)
    assert np.all(b[0] > a[0]) and np.all(b[0, 6:] > 0)


def test_process_keeps_groups_apart():
    """The same rows in two groups of their own: each group normalizes its own events."""
    x = rewarded([0, 1, 0, 1], [0, 0, 1, 1], length=2, prompt=1,
                 steps=[([1], [1.0]), ([1], [0.0]), ([1], [1.0]), ([1], [0.0])])
    a = adv.process(x).advantages
    np.testing.assert_allclose(a[:2], a[2:])


def test_gae_with_the_value_head_as_critic():
    # values [.5, .2, .8] on the 3 completion tokens, reward 1 at the last, gamma 1, lam .5:
    # deltas: -.3 (0 + .2 - .5), .6 (0 + .8 - .2), .2 (1 + 0 - .8)
    # A_2 = .2, A_1 = .6 + .5 * .2 = .7, A_0 = -.3 + .5 * .7 = .05; returns = A + V
    values = np.zeros((1, 5))
    values[0, 1:4] = [0.5, 0.2, 0.8]
    x = rewarded([1], [0], values=values)
    out = adv.gae(x, gamma=1.0, lam=0.5, whiten=False)
    np.testing.assert_allclose(completion(out.advantages), [[0.05, 0.7, 0.2]], rtol=1e-12)
    np.testing.assert_allclose(completion(out.returns), [[0.55, 0.9, 1.0]], rtol=1e-12)
    # gamma .9, lam 1: A_t = discounted return - V_t: [.81 - .5, .9 - .2, 1 - .8]
    out = adv.gae(x, gamma=0.9, lam=1.0, whiten=False)
    np.testing.assert_allclose(completion(out.advantages), [[0.31, 0.7, 0.2]], rtol=1e-12)


def test_gae_reads_token_rewards_and_steps():
    """A KL penalty of -.1 on every token and a step reward at token 1: with V = 0, gamma = lam
    = 1 the advantage is the sum of the rewards still to come."""
    x = rewarded([1], [0], steps=[([1], [0.5])], values=np.zeros((1, 5)),
                 token_rewards=np.full((1, 5), -0.1))
    a = completion(adv.gae(x, gamma=1.0, lam=1.0, whiten=False).advantages)
    np.testing.assert_allclose(a, [[1.5 - 0.3, 1 - 0.2, 1 - 0.1]], rtol=1e-12)


def test_shift_values_aligns_the_state_each_token_was_drawn_in():
    np.testing.assert_array_equal(shift_values(np.array([[1.0, 2.0, 3.0]])), [[0, 1, 2]])


def test_outcome_estimators_score_rows_by_the_sum_of_their_events():
    x = rewarded([1, 0], [0, 0], steps=[([1], [0.5]), ([], [])],
                 token_rewards=np.full((2, 5), -0.1))
    np.testing.assert_allclose(x.scores(), [1 + 0.5 - 0.3, -0.3])


def test_group_estimators_refuse_groups_of_one():
    for name in ("grpo", "rloo", "process"):
        with pytest.raises(UserError, match="group_size"):
            adv.estimate(name, rewarded([1, 0], [0, 1]))
    with pytest.raises(UserError, match="value_head"):
        adv.estimate("gae", rewarded([1], [0]))
    with pytest.raises(UserError, match="one of"):
        adv.estimate("nope", rewarded([1], [0]))


def test_grpo_batch_scale_is_trls_group_mean_over_the_batch_std():
    """TRL's scale_rewards='batch' (eps 1e-4): the group's mean, the std of all 8 rewards.
    [1, 0, 0, 1 | 1, 0, 0, 0]: batch mean 3/8, unbiased var (3 (5/8)^2 + 5 (3/8)^2) / 7 = 15/56;
    group means .5 and .25. scale='none' is r - group mean (no division)."""
    x = rewarded([1, 0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1])
    centered = np.array([0.5, -0.5, -0.5, 0.5, 0.75, -0.25, -0.25, -0.25])
    a = completion(adv.grpo(x, eps=1e-4, scale="batch").advantages)
    np.testing.assert_allclose(a[:, 0], centered / (np.sqrt(15 / 56) + 1e-4), rtol=1e-12)
    assert np.all(a == a[:, :1])
    np.testing.assert_allclose(completion(adv.grpo(x, scale="none").advantages)[:, 0],
                               centered, rtol=1e-12)
    with pytest.raises(UserError, match="grpo_advantage.scale"):
        adv.grpo(x, scale="rows")


def test_trr_pp_whitens_each_group_over_its_own_tokens():
    # Group 0 (rewards on a 0/1 scale): row 0 outcome 1 on 3 tokens, row 1 outcome 0 on 1
    # token: returns [1, 1, 1 | 0]; mean 3/4, unbiased var (3 * 1/16 + 9/16) / 3 = 1/4.
    # Group 1 (a -1 .. 0.5 scale): row 2 outcome 0.5 on 1 token, row 3 outcome -1 on 2
    # tokens: returns [.5 | -1, -1]; mean -1/2, var (1 + 2 * 1/4) / 2 = 3/4.
    # Token-weighted: the 3-token row pulls its group's mean towards its own reward.
    mask = np.zeros((4, 5))
    mask[0, 1:4] = mask[1, 1] = mask[2, 1] = 1
    mask[3, 1:3] = 1
    x = RLBatch(tokens=np.zeros(mask.shape, int), input_mask=mask > 0,
                positions=np.zeros(mask.shape, int), loss_mask=mask, completion_mask=mask,
                group=np.array([0, 0, 1, 1]), outcome=np.array([1.0, 0.0, 0.5, -1.0]),
                step_rewards=np.zeros(mask.shape), step_rewarded=np.zeros(mask.shape, bool))
    a = adv.trr_pp(x).advantages
    s0, s1 = np.sqrt(0.25 + 1e-8), np.sqrt(0.75 + 1e-8)
    want = np.zeros(mask.shape)
    want[0, 1:4], want[1, 1] = 0.25 / s0, -0.75 / s0
    want[2, 1], want[3, 1:3] = 1.0 / s1, -0.5 / s1
    np.testing.assert_allclose(a, want, rtol=1e-10)
    for g in (0, 1):  # each sub-batch: zero mean, unit (unbiased) variance over its tokens
        tokens = a[(x.group == g)[:, None] & (mask > 0)]
        assert abs(tokens.mean()) < 1e-12 and abs(tokens.var(ddof=1) - 1) < 1e-6
    # one batch-wide whitening (reinforce_pp) would mix the two scales
    assert not np.allclose(adv.reinforce_pp(x).advantages, a)
    # an all-equal sub-batch gets 0, and a one-row group is allowed (group_size 1 in AZR)
    assert np.all(adv.trr_pp(dataclasses.replace(x, outcome=np.ones(4))).advantages == 0)
    assert "trr_pp" in adv.ESTIMATORS and "trr_pp" not in adv.GROUPED
