"""Rewards by name on real checkers: the outcome checker, exact step labels placed on the steps'
last tokens, PRM scores through the Verifier interface (a fake verifier here), the sandboxed
executor with partial credit, the format reward, DAPO's overlong penalty in tokens; and the
sum / normalize-each (GDPO) combinations against hand-computed values."""

import numpy as np
import pytest

from jaxrl_reason.data.batching import Example, encode_prompt, step_ends
from jaxrl_reason.data.chain import ChainTask
from jaxrl_reason.data.programs import ProgramTask
from jaxrl_reason.data.tasks import Problem
from jaxrl_reason.errors import ConfigError
from jaxrl_reason.rewards.executor import Executor
from jaxrl_reason.rl import rewards as R
from jaxrl_reason.rollouts import Rollouts, check_all
from jaxrl_reason.tokenizers import CharTokenizer

TOK = CharTokenizer()
NEWLINE = tuple(TOK.encode("\n"))


def rollouts(task, problems, completions, finished=None, group=None, max_new_tokens=64):
    """Rollouts of text completions, encoded as the sampler would have emitted them (EOS
    appended where the row finished)."""
    finished = [True] * len(problems) if finished is None else finished
    ids = [tuple(TOK.encode(c)) + ((TOK.eos_id,) if f else ())
           for c, f in zip(completions, finished, strict=True)]
    return Rollouts(
        task, list(problems), [tuple(encode_prompt(TOK, task.prompt(p))) for p in problems],
        ids, list(completions), np.asarray(finished), check_all(task, problems, completions),
        [step_ends(c, NEWLINE, (TOK.eos_id,)) for c in ids],
        np.asarray(group if group is not None else range(len(problems))),
        [np.zeros(len(c), np.float32) for c in ids], max_new_tokens)


CHAIN = ChainTask(min_steps=3, max_steps=3)
PROBLEM = CHAIN.problem(7, (("+", 5), ("*", 3), ("-", 4)))  # 12, 36, 32
GOLD = "<<7+5=12>>\n<<12*3=36>>\n<<36-4=32>>\n#### 32\n"
SLIP = "<<7+5=12>>\n<<12*3=35>>\n<<35-4=31>>\n#### 31\n"  # step 2 wrong, step 3 copies it
SHORT = "<<7+5=12>>\n#### 12\n"  # stops after one step


def test_outcome_and_step_labels_on_chain_completions():
    ro = rollouts(CHAIN, [PROBLEM] * 3, [GOLD, SLIP, SHORT])
    np.testing.assert_array_equal(R.OutcomeReward()(ro), [1, 0, 0])
    steps = R.StepLabelReward()(ro)
    # 4 lines each (3 steps + answer) for the first two: the answer line gets no step reward
    np.testing.assert_array_equal(steps[0], [1, 1, 1, np.nan])
    np.testing.assert_array_equal(steps[1], [1, 0, 0, np.nan])
    # 2 lines: step 1 right, its "answer line" judged as step 2 (wrong); step 3 never written
    np.testing.assert_array_equal(steps[2], [1, 0])
    # the values sit at the newline ending each line (indices into the completion ids)
    assert [ro.completion_ids[0][e] for e in ro.step_ends[0]] == list(NEWLINE) * 4


def test_prm_reward_reads_the_verifier_at_the_step_ends():
    class FakeVerifier:
        kind = "prm"

        def __init__(self):
            self.calls = []

        def step_scores(self, examples, ends):
            self.calls.append((examples, ends))
            return [np.linspace(0.9, 0.1, len(e)) for e in ends]

    ro = rollouts(CHAIN, [PROBLEM] * 2, [GOLD, SHORT])
    fake = FakeVerifier()
    scores = R.PRMReward(verifier=fake)(ro)
    (examples, ends), = fake.calls
    assert examples == [Example(ro.prompt_ids[i], ro.completion_ids[i]) for i in range(2)]
    assert ends == ro.step_ends
    np.testing.assert_allclose(scores[1], [0.9, 0.1])
    with pytest.raises(ConfigError, match="prm_reward.workdir"):
        R.PRMReward()


def test_format_and_soft_overlong_penalty_in_tokens():
    ro = rollouts(CHAIN, [PROBLEM] * 3, [GOLD, "<<7+5=12>>\n", GOLD[:20]],
                  finished=[True, True, False])
    np.testing.assert_array_equal(R.FormatReward()(ro), [0, -1, -1])
    # max 20 tokens, cache 8: 0 up to 12 tokens, linear to -1 at 20
    assert [R.overlong_penalty(n, 20, 8) for n in (12, 13, 16, 20, 21)] == \
        [0.0, -1 / 8, -0.5, -1.0, -1.0]
    lengths = [len(c) for c in ro.completion_ids]  # tokens, not characters
    want = [R.overlong_penalty(n, 40, 16) for n in lengths]
    np.testing.assert_allclose(R.OverlongReward(cache=16, max_length=40)(ro), want)
    assert want[0] == -1.0 and lengths[2] == 20 and want[2] == 0.0  # GOLD + EOS: 46 tokens
    # by default the limit is the generation budget: a truncated row is at -1
    ro.max_new_tokens = 20
    assert R.OverlongReward(cache=4)(ro)[2] == -1.0


def test_executor_reward_runs_the_sandbox_with_partial_credit():
    hidden = [('"a b"', "'b a'"), ('"single"', "'single'")]
    meta = {"program": 'def f(s):\n    return " ".join(reversed(s.split()))',
            "message": "reverse words"}
    induction = Problem("q", "", meta={**meta, "task_type": "induction", "hidden": hidden})
    abduction = Problem("q", "", meta={**meta, "task_type": "abduction", "output": "'b a'"})
    deduction = Problem("q", "", meta={**meta, "task_type": "deduction", "input": '"a b"',
                                       "output": "'b a'"})
    cases = [
        (induction, "<answer>def f(s):\n    return ' '.join(s.split()[::-1])</answer>", 1.0),
        (induction, "<answer>def f(s):\n    return s</answer>", 0.5),  # passes "single"
        (induction, "<answer>import os\ndef f(s):\n    return s</answer>", 0.0),  # banned
        (induction, "no answer", -1.0),
        (abduction, "<answer>'a    b'</answer>", 1.0),
        (abduction, "<answer>'a c'</answer>", 0.0),
        (deduction, "<answer>'b a'</answer>", 1.0),
    ]
    with Executor(workers=2, timeout_s=2.0, memory_mb=128) as ex:
        task = ProgramTask(executor=ex)
        ro = rollouts(task, [p for p, _, _ in cases], [c for _, c, _ in cases])
        got = R.ExecutorReward(malformed=-1.0)(ro)
    np.testing.assert_array_equal(got, [want for _, _, want in cases])
    with pytest.raises(Exception, match="program task"):
        R.ExecutorReward()(rollouts(CHAIN, [PROBLEM], [GOLD]))


def test_combine_sum_and_normalize_each():
    ro = rollouts(CHAIN, [PROBLEM] * 4, [GOLD, SLIP, SHORT, GOLD], group=[0, 0, 1, 1])
    rewards = [("outcome", R.OutcomeReward(), 2.0), ("format", R.FormatReward(), 1.0),
               ("step_labels", R.StepLabelReward(), 0.5)]
    summed = R.combine(ro, rewards, "sum")
    np.testing.assert_array_equal(summed.outcome, [2, 0, 0, 2])  # format: all well formed
    np.testing.assert_array_equal(summed.steps[1], [0.5, 0, 0, np.nan])
    # normalize each within its group first: outcome [1, 0] -> +-1/sqrt(.5) (std ddof 1);
    # format is constant -> 0; steps of group 0 pooled: [1,1,1,1,0,0] mean 2/3
    each = R.combine(ro, rewards, "normalize_each")
    z = 0.5 / np.sqrt(0.5)
    np.testing.assert_allclose(each.outcome, 2 * np.array([z, -z, -z, z]), rtol=1e-5)
    pool = np.array([1, 1, 1, 1, 0, 0.0])
    hi = (1 - pool.mean()) / (pool.std(ddof=1) + 1e-6)
    np.testing.assert_allclose(each.steps[0][:3], 0.5 * hi, rtol=1e-6)
    metrics = R.reward_metrics(summed)
    assert metrics["reward/outcome_mean"] == 0.5 and metrics["reward/step_labels_mean"] > 0


def test_unknown_rewards_are_config_errors():
    with pytest.raises(ConfigError, match="unknown rewards"):
        R.build({"outcome": 1.0, "nope": 1.0})
    with pytest.raises(ConfigError, match="at least one"):
        R.build({})
