"""Addition task: formats, exact step labels, deterministic and disjoint splits."""

import itertools
import random

import pytest

from jaxrl_reason.data.addition import AdditionTask, split_of
from jaxrl_reason.rewards.steps import addition_columns, addition_scratchpad


def test_formats_match_spec():
    task = AdditionTask(scratchpad="nye")
    p = task.problem(624, 259)
    assert task.prompt(p) == "624+259\n"
    assert task.prompt(p, hint="883") == "624+259 H883\n"
    assert task.target(p) == "624+259,C0\n62+25,3C1\n6+2,83C0\n,883C0\nA:883\n"
    assert task.target(task.problem(95, 17)) == "95+17,C0\n9+1,2C1\n,12C1\nA:112\n"
    assert (p.question, p.answer, p.difficulty, p.meta) == (
        "624+259",
        "883",
        3,
        {"a": 624, "b": 259},
    )
    assert AdditionTask(scratchpad="none").target(p) == "A:883\n"
    columns = AdditionTask()
    p = columns.problem(624, 259)
    assert columns.target(p) == "4+9+0=13\n2+5+1=08\n6+2+0=08\nA:883\n"
    assert columns.target(columns.problem(95, 17)) == "5+7+0=12\n9+1+1=11\nA:112\n"
    rev = AdditionTask(reverse=True)
    assert (rev.prompt(p), rev.target(p)) == ("426+952\n", "4+9+0=13\n2+5+1=08\n6+2+0=08\nA:388\n")
    with pytest.raises(ValueError, match="scratchpad"):
        AdditionTask(scratchpad=True)


def test_unequal_lengths_write_emptied_operand_as_empty():
    assert addition_scratchpad("12", "5") == ["12+5,C0", "1+,7C0", ",17C0"]
    assert addition_columns("12", "5") == ["2+5+0=07", "1+0+0=01"]


def _random_problems(task, count, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n = rng.randint(1, 8)
        lo = 0 if n == 1 else 10 ** (n - 1)
        out.append(task.problem(rng.randint(lo, 10**n - 1), rng.randint(lo, 10**n - 1)))
    return out


SCRATCH_LINES = {"nye": 1, "columns": 0}  # scratch lines beyond one per column


@pytest.mark.parametrize("scratchpad", ["nye", "columns"])
@pytest.mark.parametrize("reverse", [False, True])
def test_gold_targets_check_correct_with_all_steps(scratchpad, reverse):
    if scratchpad == "nye" and reverse:
        pytest.skip("nye is never reversed")
    task = AdditionTask(max_digits=8, scratchpad=scratchpad, reverse=reverse)
    problems = _random_problems(task, 300, seed=0) + [task.problem(99999999, 99999999)]
    carries = 0
    for p in problems:
        check = task.check(p, task.target(p))
        assert check.correct and check.answer == p.answer == str(p.meta["a"] + p.meta["b"])
        assert check.steps == [True] * (p.difficulty + SCRATCH_LINES[scratchpad])
        carries += "C1" in p.rationale or "+1=" in p.rationale
    assert carries > 100  # the sample really exercises carries


def _corrupt(char):
    return "0" if char != "0" else "1"


@pytest.mark.parametrize("scratchpad", ["nye", "columns"])
def test_corrupting_one_digit_or_carry_fails_exactly_that_step(scratchpad):
    task = AdditionTask(max_digits=8, scratchpad=scratchpad)
    rng = random.Random(1)
    for p in _random_problems(task, 100, seed=2):
        lines = task.target(p).split("\n")
        k = rng.randrange(len(lines) - 1)  # any scratch line or the answer line
        positions = [i for i, c in enumerate(lines[k]) if c.isdigit()]
        if k == 0 and scratchpad == "nye":
            positions = [len(lines[0]) - 1]  # line 0's carry
        i = rng.choice(positions)
        lines[k] = lines[k][:i] + _corrupt(lines[k][i]) + lines[k][i + 1 :]
        check = task.check(p, "\n".join(lines))
        n_scratch = p.difficulty + SCRATCH_LINES[scratchpad]
        if k < n_scratch:
            assert check.steps[:k] == [True] * k
            assert check.steps[k] is False
            assert check.correct  # answer line untouched
        else:
            assert check.steps == [True] * n_scratch
            assert not check.correct


def test_missing_and_garbled_lines():
    task = AdditionTask(scratchpad="nye")
    p = task.problem(624, 259)
    truncated = task.check(p, "624+259,C0\n62+25,3C1\n")
    assert truncated.steps == [True, True, False, False] and truncated.answer is None
    assert not truncated.correct
    garbled = task.check(p, task.target(p).replace("A:883", "A:88x"))
    assert garbled.answer is None and not garbled.correct and all(garbled.steps)
    assert not task.check(p, task.target(p).replace("A:883", "A:0883")).correct
    # An early answer line stands in for a scratch line: that line and the rest are wrong.
    early = task.check(p, "624+259,C0\nA:883\n")
    assert early.correct and early.steps == [True, False, False, False]


def test_hint_only_in_hinted_prompt():
    task = AdditionTask()
    for p in itertools.islice(task.problems("train", 0), 50):
        assert " H" not in task.prompt(p)
        assert task.prompt(p, hint=p.answer).endswith(f" H{p.answer}\n")
        assert " H" not in task.target(p)


def test_streams_deterministic_difficulty_uniform_and_disjoint():
    task = AdditionTask(min_digits=1, max_digits=3, test_size=300)
    train_problems = list(itertools.islice(task.problems("train", 7), 3000))
    train = [p.question for p in train_problems]
    assert train[:200] == [p.question for p in itertools.islice(task.problems("train", 7), 200)]
    assert train[:200] != [p.question for p in itertools.islice(task.problems("train", 8), 200)]
    test = list(task.problems("test", 7))
    assert len(test) == 300
    assert {p.difficulty for p in test} == {1, 2, 3}
    assert not set(train) & {p.question for p in test}
    pairs = [(p.meta["a"], p.meta["b"]) for p in test]
    assert all(split_of(a, b) == "test" and split_of(b, a) == "test" for a, b in pairs)
    counts = [sum(p.difficulty == n for p in train_problems) for n in (1, 2, 3)]
    assert min(counts) > 800  # uniform over digit lengths, not over numbers
    # the validation split is disjoint from both, and as large as the test split
    valid = list(task.problems("valid", 7))
    assert len(valid) == 300 and {p.difficulty for p in valid} == {1, 2, 3}
    assert all(split_of(p.meta["a"], p.meta["b"]) == "valid" for p in valid)
    assert not {p.question for p in valid} & (set(train) | {p.question for p in test})
    with pytest.raises(ValueError, match="split"):
        next(task.problems("dev", 0))


def test_problems_of_length():
    task = AdditionTask()
    probs = task.problems_of_length(6, 40, seed=3)
    assert len(probs) == 40 and all(p.difficulty == 6 for p in probs)
    assert all(len(str(p.meta["a"])) == len(str(p.meta["b"])) == 6 for p in probs)
    assert all(split_of(p.meta["a"], p.meta["b"]) == "test" for p in probs)
    assert [p.question for p in probs] == [p.question for p in task.problems_of_length(6, 40, 3)]


def test_reverse_format_round_trips():
    task = AdditionTask(scratchpad="none", reverse=True)
    p = task.problem(624, 259)
    assert task.prompt(p) == "426+952\n" and task.target(p) == "A:388\n"
    assert task.prompt(p, hint="883") == "426+952 H388\n"
    check = task.check(p, task.target(p))
    assert check == check.__class__(answer="883", correct=True, steps=None)
    assert not task.check(p, "A:883\n").correct  # unreversed answer is wrong in reverse mode
    big = task.problem(50, 50)
    assert task.target(big) == "A:001\n" and task.check(big, "A:001\n").correct
    for p in itertools.islice(task.problems("train", 0), 100):
        assert task.check(p, task.target(p)).correct
    with pytest.raises(ValueError, match="reverse"):
        AdditionTask(scratchpad="nye", reverse=True)


def test_padded_answer_has_the_longer_operand_length_plus_one():
    """Lee et al.'s format: the answer's length is fixed by the operands, so a label that drops
    a digit is shorter than a right one and the length filter sees it."""
    task = AdditionTask(scratchpad="none", reverse=True, pad_answer=True)
    p = task.problem(624, 259)
    assert (p.answer, task.target(p)) == ("0883", "A:3880\n")
    assert task.check(p, "A:3880\n").correct
    assert not task.check(p, "A:388\n").correct  # the unpadded sum is a different output
    assert task.target(task.problem(7, 93015)) == "A:220390\n"  # 93022: width 5 + 1
    assert task.target(task.problem(50, 50)) == "A:001\n"  # a carry out needs no pad
    for p in itertools.islice(task.problems("train", 0), 100):
        assert len(p.answer) == p.difficulty + 1 and task.check(p, task.target(p)).correct


def test_mixed_lengths_vary_the_shorter_operand_in_either_order():
    """mixed_lengths: the longer operand has the problem's digit count, the other any count up
    to it, on either side; the gold column scratchpad of such a pair checks right. Off (the
    default), both operands have the count, and the stream is the one it always was."""
    mixed = AdditionTask(min_digits=3, max_digits=3, reverse=True, mixed_lengths=True)
    probs = list(itertools.islice(mixed.problems("train", 0), 600))
    lengths = [(len(str(p.meta["a"])), len(str(p.meta["b"]))) for p in probs]
    assert all(max(pair) == 3 == p.difficulty for pair, p in zip(lengths, probs, strict=True))
    assert {min(pair) for pair in lengths} == {1, 2, 3}
    assert any(a < b for a, b in lengths) and any(a > b for a, b in lengths)
    assert all(mixed.check(p, mixed.target(p)).steps == [True] * 3 for p in probs[:50])
    assert all(split_of(p.meta["a"], p.meta["b"]) == "train" for p in probs)
    same = AdditionTask(min_digits=3, max_digits=3)
    stream = list(itertools.islice(same.problems("train", 0), 200))
    assert all(len(str(p.meta["a"])) == len(str(p.meta["b"])) == 3 for p in stream)
    # the stream drawn before the switch existed (so every earlier run's problems stand)
    assert [p.question for p in stream[:4]] == ["397+192", "363+534", "195+302", "927+291"]


def test_random_offset_puts_0_to_k_spaces_before_the_prompt_only():
    task = AdditionTask(min_digits=1, max_digits=3, reverse=True, random_offset=3)
    probs = list(itertools.islice(task.problems("train", 0), 400))
    pads = [len(task.prompt(p)) - len(task.prompt(p).lstrip(" ")) for p in probs]
    assert set(pads) == {0, 1, 2, 3}
    plain = AdditionTask(min_digits=1, max_digits=3, reverse=True)
    for p, pad in zip(probs[:50], pads[:50], strict=True):
        same = plain.problem(p.meta["a"], p.meta["b"])
        assert task.prompt(p) == " " * pad + plain.prompt(same)
        assert task.prompt(p, hint=p.answer) == " " * pad + plain.prompt(same, hint=p.answer)
        assert task.target(p) == plain.target(same) and task.check(p, task.target(p)).correct
    with pytest.raises(ValueError, match="random_offset"):
        AdditionTask(random_offset=-1)
