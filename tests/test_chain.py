"""Chain arithmetic: the problems, their GSM8K-form rationales, the held-out split and the
exact step checker (arithmetic and the use of the true previous value)."""

import itertools

import numpy as np
import pytest

from jaxrl_reason.data.batching import step_ends
from jaxrl_reason.data.chain import ChainTask, intermediates, step_labels
from jaxrl_reason.errors import ConfigError
from jaxrl_reason.rl.rewards import labels_on_steps
from jaxrl_reason.tokenizers import CharTokenizer

OPS = (("+", 5), ("*", 3), ("-", 4))


def test_rationale_answer_and_prompt_in_gsm8k_form():
    task = ChainTask()
    p = task.problem(7, OPS)
    assert p.question == "7 +5 *3 -4" and p.answer == "32" and p.difficulty == 3
    assert task.prompt(p) == "7 +5 *3 -4\n" and task.prompt(p, hint="32") == "7 +5 *3 -4 H32\n"
    assert task.target(p) == "<<7+5=12>>\n<<12*3=36>>\n<<36-4=32>>\n#### 32\n"
    check = task.check(p, task.target(p))
    assert check.correct and check.answer == "32" and check.steps == [True, True, True]


@pytest.mark.parametrize("rationale, labels", [
    ("<<7+5=12>>\n<<12*3=36>>\n<<36-4=32>>\n", [True, True, True]),
    ("<<7+5=13>>\n<<13*3=39>>\n<<39-4=35>>\n", [False, False, False]),  # carries the error
    ("<<7+5=13>>\n<<12*3=36>>\n<<36-4=32>>\n", [False, True, True]),  # recovers the true value
    ("<<7+5=12>>\n<<12+3=15>>\n<<15-4=11>>\n", [True, False, False]),  # wrong operation
    ("<<7+5=12>>\n", [True, False, False]),  # missing lines
    ("<<7+5=12>> and more\n<<12*3=36>>\n", [False, True, False]),  # not the line's form
    ("<<7+5=12>>\n\n<<12*3=36>>\n<<36-4=32>>\n", [True, False, False]),  # a blank line is a step
])
def test_step_labels_judge_arithmetic_and_the_true_previous_value(rationale, labels):
    assert step_labels(7, OPS, rationale + "#### 1\n") == labels


def test_answer_is_checked_after_the_hashes_only():
    task = ChainTask()
    p = task.problem(7, OPS)
    assert not task.check(p, "<<7+5=12>>\n32\n").correct  # no "####": no answer
    assert task.check(p, "#### 32").correct and task.check(p, "#### 32").steps == [False] * 3


def test_problems_are_deterministic_in_range_and_split_disjointly():
    task = ChainTask(min_steps=3, max_steps=8, max_value=99)
    train = list(itertools.islice(task.problems("train", 0), 500))
    assert train == list(itertools.islice(task.problems("train", 0), 500))
    test = list(task.problems("test", 0))
    assert len(test) == 1000 and not {p.question for p in test} & {p.question for p in train}
    valid = {p.question for p in task.problems("valid", 0)}
    assert len(valid) > 900 and not valid & ({p.question for p in test} | set(
        p.question for p in train))
    for p in train + test:
        values = intermediates(p.meta["start"], p.meta["ops"])
        assert all(0 <= v <= 99 for v in values) and 3 <= p.difficulty <= 8
        assert task.check(p, task.target(p)).steps == [True] * p.difficulty
    assert {p.difficulty for p in train} == set(range(3, 9))
    six = task.problems_of_length(6, 20, seed=1)
    assert len(six) == 20 and {p.difficulty for p in six} == {6}


def test_bad_settings_name_the_binding():
    with pytest.raises(ConfigError, match="ChainTask.min_steps=5"):
        ChainTask(min_steps=5, max_steps=3)
    with pytest.raises(ConfigError, match="ChainTask.ops='/'"):
        ChainTask(ops="/")
    with pytest.raises(ConfigError, match="ChainTask.max_steps='8' must be int"):
        ChainTask(max_steps="8")


def test_step_label_k_lands_on_the_end_of_line_k_with_blank_lines():
    """The labels and `step_ends` count the same lines (a blank one included), so the reward of
    line k sits on line k's newline."""
    tok = CharTokenizer()
    text = "<<7+5=12>>\n\n<<12*4=48>>\n<<48-4=44>>\n#### 44\n"
    ids = tok.encode(text)
    ends = step_ends(ids, tok.encode("\n"))
    labels = labels_on_steps(ChainTask().check(ChainTask().problem(7, OPS), text).steps,
                             len(ends))
    lines = text.split("\n")
    assert [lines[k] for k in range(3)] == ["<<7+5=12>>", "", "<<12*4=48>>"]
    np.testing.assert_array_equal(labels[:3], [1.0, 0.0, 0.0])
    assert np.isnan(labels[3:]).all()  # the answer lines carry no step label
    assert tok.decode(ids[: ends[1] + 1]) == "<<7+5=12>>\n\n"  # end 1 is the blank line's


@pytest.mark.parametrize("rationale, labels", [
    ("<<12+7=19>>\n<<3*19=57>>\n<<57-5=52>>\n", [True, True, True]),  # * commuted
    ("<<7 + 12 = 19>>\n<<19 * 3 = 57>>\n<< 57 - 5 = 52 >>\n", [True, True, True]),  # spaced
    ("<<12+7=19>>\n<<19*3=57>>\n<<5-57=52>>\n", [True, True, False]),  # - does not commute
    ("<<12+7=19>>\n<<3*19=58>>\n<<57-5=52>>\n", [True, False, True]),  # commuted, wrong sum
])
def test_equivalent_forms_of_a_line_are_right(rationale, labels):
    assert step_labels(12, (("+", 7), ("*", 3), ("-", 5)), rationale) == labels


def swapped_lines(problems) -> int:
    """Gold lines that write the operation's operand first and the running value second."""
    count = 0
    for p in problems:
        truth = [p.meta["start"], *intermediates(p.meta["start"], p.meta["ops"])]
        for k, (ln, (op, y)) in enumerate(zip(p.rationale.splitlines(), p.meta["ops"],
                                              strict=True)):
            count += truth[k] != y and ln.replace(" ", "").startswith(f"<<{y}{op}{truth[k]}=")
    return count


def test_varied_rationales_are_many_strings_all_right():
    """rationale_forms="varied": the gold lines of one problem come in several forms (so right
    solutions are not one string), every one judged right; "fixed" (the default) keeps the
    plain form and the problem stream it always had."""
    varied = ChainTask(rationale_forms="varied")
    probs = list(itertools.islice(varied.problems("train", 0), 200))
    lines = [ln for p in probs for ln in p.rationale.splitlines()]
    assert any(" = " in ln for ln in lines) and any("=" in ln and " " not in ln for ln in lines)
    assert swapped_lines(probs) > 50
    assert all(all(varied.check(p, varied.target(p)).steps) and varied.check(
        p, varied.target(p)).correct for p in probs)
    fixed = ChainTask()
    stream = list(itertools.islice(fixed.problems("train", 0), 50))
    assert [p.question for p in stream[:3]] == ["8 +1 *4 -3 +4 -2 -5 -5 +9",
                                                 "5 *9 -1 -7 *2 +9 +9 -2",
                                                 "15 *1 +3 -6 *4 +9 -6 -9"]
    assert all(" " not in p.rationale for p in stream)
    swapped_only = list(itertools.islice(ChainTask(rationale_forms="swapped").problems(
        "train", 0), 200))
    assert all(" " not in p.rationale for p in swapped_only) and swapped_lines(swapped_only) > 50
    with pytest.raises(ConfigError, match="rationale_forms"):
        ChainTask(rationale_forms="random")
