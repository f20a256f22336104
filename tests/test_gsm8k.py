"""GSM8K: TFDS builder from local JSONL, grain pipeline, task, calculator step checker."""

import itertools
import json
import re
from pathlib import Path

import pytest

from jaxrl_reason.data import gsm8k
from jaxrl_reason.data.gsm8k import Gsm8kTask, load_gsm8k, record_to_problem
from jaxrl_reason.data.pipeline import input_pipeline
from jaxrl_reason.data.tasks import Problem
from jaxrl_reason.rewards.steps import calculator_annotations, gsm8k_calculator_steps, value_matches

# Made-up GSM8K-shaped rows (not from the data set), so these tests run in every clone.
FIXTURE = Path(__file__).resolve().parent / "fixtures/gsm8k"
# The real data set: $JAXRL_REASON_GSM8K_DIR, else the shared/ dir beside the repo.
REAL = gsm8k.default_manual_dir()


@pytest.fixture(scope="module", params=["fixture", "real"])
def manual(request) -> Path:
    """The manual dir the data tests read: the fixture rows, then the real data set if present."""
    if request.param == "fixture":
        return FIXTURE
    if REAL is None or not all((REAL / f"{s}.jsonl").is_file() for s in gsm8k.SPLITS):
        pytest.skip(f"no GSM8K data at ${gsm8k.ENV_VAR} or in the shared/ dir beside the repo")
    return REAL


def _lines(manual, split):
    return (manual / f"{split}.jsonl").read_text().splitlines()


@pytest.fixture(scope="module")
def data_dir(manual, tmp_path_factory):
    """The TFDS dataset, built once per manual dir into a tmp data_dir (~4 s for the real one)."""
    path = tmp_path_factory.mktemp("tfds")
    load_gsm8k("test", manual, str(path))
    return str(path)


@pytest.fixture(scope="module")
def executor():
    from jaxrl_reason.rewards.executor import Executor

    with Executor(workers=2, timeout_s=2.0, memory_mb=512) as ex:
        yield ex


# ---------------------------------------------------------------- grain pipeline


def test_train_pipeline_shuffles_each_epoch_and_repeats():
    ds = input_pipeline(list(range(10)), seed=3, train=True, map_fn=lambda x: x * 2, batch_size=5)
    batches = list(itertools.islice(iter(ds), 6))
    epochs = [sum(batches[i : i + 2], []) for i in (0, 2, 4)]
    assert all(sorted(e) == list(range(0, 20, 2)) for e in epochs)
    assert epochs[0] != epochs[1] and epochs[0] != list(range(0, 20, 2))
    again = list(
        itertools.islice(
            iter(
                input_pipeline(
                    list(range(10)), seed=3, train=True, map_fn=lambda x: x * 2, batch_size=5
                )
            ),
            6,
        )
    )
    assert again == batches
    other = input_pipeline(
        list(range(10)), seed=4, train=True, map_fn=lambda x: x * 2, batch_size=5
    )
    assert list(itertools.islice(iter(other), 6)) != batches


def test_iterator_state_restores_the_exact_sequence():
    make = lambda: iter(input_pipeline(list(range(23)), seed=0, train=True, batch_size=4))
    it = make()
    for _ in range(7):  # into the second epoch
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(15)]
    fresh = make()
    fresh.set_state(state)
    assert [next(fresh) for _ in range(15)] == expected
    assert json.loads(json.dumps(state)) == state  # plain data: orbax/grain can store it


def test_eval_pipeline_is_one_ordered_pass_and_shards_are_disjoint():
    ds = input_pipeline(list(range(10)), seed=0, train=False, batch_size=4)
    assert list(ds) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    shards = [
        list(
            itertools.islice(
                iter(
                    input_pipeline(
                        list(range(10)), seed=1, train=True, shard_index=i, shard_count=2
                    )
                ),
                5,
            )
        )
        for i in range(2)
    ]
    assert sorted(shards[0] + shards[1]) == list(range(10))


# ---------------------------------------------------------------- TFDS builder


def test_builder_yields_every_row_in_file_order(manual, data_dir):
    for split in ("train", "test"):
        lines = _lines(manual, split)
        source = load_gsm8k(split, data_dir=data_dir)
        assert len(source) == len(lines)
        for i in [*range(min(20, len(lines))), len(lines) // 2, len(lines) - 1]:
            row = json.loads(lines[i])
            problem = record_to_problem(source[i])
            assert problem.question == row["question"]
            assert problem.rationale == row["answer"].split("####")[0].strip()
            assert problem.answer == row["answer"].split("####")[1].strip().replace(",", "")
    n = min(100, len(_lines(manual, "train")) - 1)
    assert len(load_gsm8k(f"train[:{n}]", data_dir=data_dir)) == n


def test_builder_from_truncated_manual_dir(manual, tmp_path):
    truncated = tmp_path / "manual"
    truncated.mkdir()
    sizes = {s: min(n, len(_lines(manual, s)) // 2) for s, n in (("train", 100), ("test", 20))}
    for split, n in sizes.items():
        (truncated / f"{split}.jsonl").write_text("\n".join(_lines(manual, split)[:n]) + "\n")
    for split, n in sizes.items():
        assert len(load_gsm8k(split, truncated, str(tmp_path / "tfds"))) == n


def test_bad_jsonl_line_names_file_and_line(manual, tmp_path):
    bad = tmp_path / "manual"
    bad.mkdir()
    (bad / "train.jsonl").write_text("\n".join(_lines(manual, "train")[:4] + ['{"question": "q"']))
    (bad / "test.jsonl").write_text(_lines(manual, "test")[0] + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{bad / 'train.jsonl'}:5: bad GSM8K row")):
        load_gsm8k("train", bad, str(tmp_path / "tfds"))
    (bad / "train.jsonl").write_text(json.dumps({"question": "q", "answer": "no hashes"}))
    with pytest.raises(ValueError, match="train.jsonl:1: bad GSM8K row"):
        load_gsm8k("train", bad, str(tmp_path / "tfds2"))


def test_missing_manual_dir_says_how_to_point_at_it(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        load_gsm8k("train", missing, str(tmp_path / "tfds"))
    assert str(missing) in str(err.value)
    assert "Gsm8kTask.manual_dir" in str(err.value) and gsm8k.ENV_VAR in str(err.value)
    monkeypatch.setenv(gsm8k.ENV_VAR, str(missing))
    assert gsm8k.default_manual_dir() == missing
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load_gsm8k("train", None, str(tmp_path / "tfds"))


# ---------------------------------------------------------------- task


def test_task_streams(manual, data_dir):
    task = Gsm8kTask(data_dir=data_dir)
    test_lines, train_lines = _lines(manual, "test"), _lines(manual, "train")
    test = list(task.problems("test", 0))
    assert [p.question for p in test[:3]] == [json.loads(r)["question"] for r in test_lines[:3]]
    assert len(test) == len(test_lines)
    n = min(20, len(train_lines))
    first = [p.question for p in itertools.islice(task.problems("train", 0), n)]
    assert first == [p.question for p in itertools.islice(task.problems("train", 0), n)]
    assert first != [p.question for p in itertools.islice(task.problems("train", 1), n)]
    assert first != [json.loads(r)["question"] for r in train_lines[:n]]
    # the validation split: the train file's rows that hash there, in file order, never in
    # the training stream; together the two are the whole train file
    questions = [json.loads(r)["question"] for r in train_lines]
    valid = [p.question for p in task.problems("valid", 0)]
    assert valid == [q for q in questions if gsm8k.is_validation(Problem(q, ""))]
    epoch = [p.question for p in itertools.islice(task.problems("train", 0),
                                                  len(questions) - len(valid))]
    assert not set(epoch) & set(valid) and set(epoch) | set(valid) == set(questions)


def test_prompt_target_and_answer_check(manual, data_dir):
    task = Gsm8kTask(data_dir=data_dir)
    p = record_to_problem(load_gsm8k("train", data_dir=data_dir)[0])
    rationale, answer = json.loads(_lines(manual, "train")[0])["answer"].split("####")
    answer = answer.strip()  # an integer in both files' first row: 72 in GSM8K
    assert task.prompt(p) == f"Question: {p.question}\nAnswer:\n"
    assert f"(The answer is {answer}.)" in task.prompt(p, hint=answer)
    assert task.target(p) == f"{rationale.strip()}\n#### {answer}"
    assert task.check(p, task.target(p)).correct
    assert task.check(p, f"so {answer}.0 in all").correct  # last number, numeric equality
    assert task.check(p, f"The answer is \\boxed{{{answer}}}.").correct
    bumped = str(int(answer) + 1)
    wrong = task.check(p, task.target(p).replace(f"#### {answer}", f"#### {bumped}"))
    assert (wrong.answer, wrong.correct, wrong.steps) == (bumped, False, None)
    assert not task.check(p, "no idea").correct


# ---------------------------------------------------------------- calculator steps


def test_gold_rationales_check_correct_step_by_step(data_dir, executor):
    task = Gsm8kTask(data_dir=data_dir, executor=executor)
    source = load_gsm8k("train", data_dir=data_dir)
    n = min(50, len(source))
    annotated = 0
    for i in range(n):
        p = record_to_problem(source[i])
        check = task.check(p, task.target(p))
        assert check.correct and check.steps == [True] * p.difficulty, (i, check)
        annotated += "<<" in p.rationale
    assert annotated >= 0.9 * n


def test_corrupted_annotation_fails_at_exactly_that_step(data_dir, executor):
    source = load_gsm8k("train", data_dir=data_dir)
    n = min(20, len(source))
    corrupted = 0
    for i in range(n):
        lines = record_to_problem(source[i]).rationale.split("\n")
        k = next((j for j, ln in enumerate(lines) if calculator_annotations(ln)), None)
        if k is None:
            continue
        expr, value = calculator_annotations(lines[k])[0]
        lines[k] = lines[k].replace(f"<<{expr}={value}>>", f"<<{expr}={float(value) + 1}>>", 1)
        steps = gsm8k_calculator_steps("\n".join(lines), executor)
        assert steps == [j != k for j in range(len(lines))], (i, lines[k])
        corrupted += 1
    assert corrupted >= 0.75 * n


def test_malformed_or_unsafe_annotations_are_wrong_steps(executor):
    rationale = (
        "plain statement\n"
        "<<2+2>>4\n"
        "<<__import__('os').getcwd()=1>>\n"
        "<<9**9**9**9=1>>\n"
        "<<10/3=3.33>> rounded\n"
        "<<10/3=3>> truncated\n"
        "<<1/0=0>>\n"
    )
    assert gsm8k_calculator_steps(rationale, executor) == [
        True,
        False,
        False,
        False,
        True,
        False,
        False,
    ]


def test_value_matches():
    assert value_matches("24.0", "24")
    assert value_matches("0.30000000000000004", ".3")
    assert value_matches("3.3333333333333335", "3.33")
    assert value_matches("1000", "1,000")
    assert not value_matches("3.3333333333333335", "3")
    assert not value_matches("3.3333333333333335", "3.34")
    assert not value_matches("Traceback", "3")
