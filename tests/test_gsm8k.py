"""GSM8K: TFDS builder from local JSONL, grain pipeline, task, calculator step checker."""

import itertools
import json
import re
from pathlib import Path

import pytest

from jaxrl_reason.data import gsm8k
from jaxrl_reason.data.gsm8k import Gsm8kTask, load_gsm8k, record_to_problem
from jaxrl_reason.data.pipeline import input_pipeline
from jaxrl_reason.rewards.steps import calculator_annotations, gsm8k_calculator_steps, value_matches

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data/gsm8k"


def _lines(split):
    if not (SHARED / f"{split}.jsonl").is_file():
        pytest.skip(f"GSM8K data not found at {SHARED} (the shared/ dir beside the repo)")
    return (SHARED / f"{split}.jsonl").read_text().splitlines()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The full dataset, built once from the shared JSONL into a tmp data_dir (~4 s)."""
    _lines("train")
    path = tmp_path_factory.mktemp("tfds")
    load_gsm8k("test", SHARED, str(path))
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


def test_builder_yields_every_row_in_file_order(data_dir):
    for split in ("train", "test"):
        lines = _lines(split)
        source = load_gsm8k(split, data_dir=data_dir)
        assert len(source) == len(lines)
        for i in (0, len(lines) // 2, len(lines) - 1):
            row = json.loads(lines[i])
            problem = record_to_problem(source[i])
            assert problem.question == row["question"]
            assert problem.rationale == row["answer"].split("####")[0].strip()
            assert problem.answer == row["answer"].split("####")[1].strip().replace(",", "")
    assert len(load_gsm8k("train[:100]", data_dir=data_dir)) == 100


def test_builder_from_truncated_manual_dir(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    for split, n in (("train", 100), ("test", 20)):
        (manual / f"{split}.jsonl").write_text("\n".join(_lines(split)[:n]) + "\n")
    assert len(load_gsm8k("train", manual, str(tmp_path / "tfds"))) == 100
    assert len(load_gsm8k("test", manual, str(tmp_path / "tfds"))) == 20


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "train.jsonl").write_text("\n".join(_lines("train")[:4] + ['{"question": "q"']))
    (manual / "test.jsonl").write_text(_lines("test")[0] + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{manual / 'train.jsonl'}:5: bad GSM8K row")):
        load_gsm8k("train", manual, str(tmp_path / "tfds"))
    (manual / "train.jsonl").write_text(json.dumps({"question": "q", "answer": "no hashes"}))
    with pytest.raises(ValueError, match="train.jsonl:1: bad GSM8K row"):
        load_gsm8k("train", manual, str(tmp_path / "tfds2"))


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


def test_task_streams(data_dir):
    task = Gsm8kTask(data_dir=data_dir)
    test = list(task.problems("test", 0))
    assert [p.question for p in test[:3]] == [json.loads(r)["question"] for r in _lines("test")[:3]]
    assert len(test) == len(_lines("test"))
    first = [p.question for p in itertools.islice(task.problems("train", 0), 20)]
    assert first == [p.question for p in itertools.islice(task.problems("train", 0), 20)]
    assert first != [p.question for p in itertools.islice(task.problems("train", 1), 20)]
    assert first != [json.loads(r)["question"] for r in _lines("train")[:20]]


def test_prompt_target_and_answer_check(data_dir):
    task = Gsm8kTask(data_dir=data_dir)
    p = record_to_problem(load_gsm8k("train", data_dir=data_dir)[0])
    assert task.prompt(p) == f"Question: {p.question}\nAnswer:\n"
    assert "The answer is 72" in task.prompt(p, hint="72") and "72" not in task.prompt(p)
    assert task.target(p).endswith("altogether in April and May.\n#### 72")
    assert task.check(p, task.target(p)).correct
    assert task.check(p, "so 72.0 clips").correct  # last number, numeric equality
    wrong = task.check(p, task.target(p).replace("#### 72", "#### 73"))
    assert (wrong.answer, wrong.correct, wrong.steps) == ("73", False, None)
    assert not task.check(p, "no idea").correct


# ---------------------------------------------------------------- calculator steps


def test_gold_rationales_check_correct_step_by_step(data_dir, executor):
    task = Gsm8kTask(data_dir=data_dir, executor=executor)
    source = load_gsm8k("train", data_dir=data_dir)
    annotated = 0
    for i in range(50):
        p = record_to_problem(source[i])
        check = task.check(p, task.target(p))
        assert check.correct and check.steps == [True] * p.difficulty, (i, check)
        annotated += "<<" in p.rationale
    assert annotated >= 45


def test_corrupted_annotation_fails_at_exactly_that_step(data_dir, executor):
    source = load_gsm8k("train", data_dir=data_dir)
    corrupted = 0
    for i in range(20):
        lines = record_to_problem(source[i]).rationale.split("\n")
        k = next((j for j, ln in enumerate(lines) if calculator_annotations(ln)), None)
        if k is None:
            continue
        expr, value = calculator_annotations(lines[k])[0]
        lines[k] = lines[k].replace(f"<<{expr}={value}>>", f"<<{expr}={float(value) + 1}>>", 1)
        steps = gsm8k_calculator_steps("\n".join(lines), executor)
        assert steps == [j != k for j in range(len(lines))], (i, lines[k])
        corrupted += 1
    assert corrupted >= 15


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
