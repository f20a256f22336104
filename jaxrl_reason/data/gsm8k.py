"""GSM8K from local JSONL through a TFDS builder (array_record, no TensorFlow), and its task.

TFDS's stock `gsm8k` builder downloads from the web; `Gsm8kManual` instead reads
`manual_dir/{train,test}.jsonl` (fields "question", "answer"), so jobs never touch the
network. The manual dir is the `manual_dir` argument (gin: `Gsm8kTask.manual_dir`), else
the `JAXRL_REASON_GSM8K_DIR` env var, else `<repo>/../shared/data/gsm8k`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gin
import tensorflow_datasets as tfds

from jaxrl_reason.data.pipeline import input_pipeline
from jaxrl_reason.data.tasks import Check, Problem, hashed_split
from jaxrl_reason.rewards.answers import extract_answer, numbers_equal
from jaxrl_reason.rewards.steps import BatchExecutor, gsm8k_calculator_steps

ENV_VAR = "JAXRL_REASON_GSM8K_DIR"
SPLITS = ("train", "test")
_SHARED_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gsm8k"


def default_manual_dir() -> Path | None:
    """`$JAXRL_REASON_GSM8K_DIR`, else `<repo>/../shared/data/gsm8k` if it exists, else None."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return _SHARED_DIR if _SHARED_DIR.is_dir() else None


def resolve_manual_dir(manual_dir: str | os.PathLike | None) -> Path:
    """The manual dir holding train/test JSONL; a clear error saying how to set it if absent."""
    path = Path(manual_dir) if manual_dir else default_manual_dir()
    missing = [s for s in SPLITS if path is None or not (path / f"{s}.jsonl").is_file()]
    if missing:
        where = path if path is not None else f"${ENV_VAR} (unset) or {_SHARED_DIR} (absent)"
        raise FileNotFoundError(
            f"GSM8K manual dir {where} lacks {', '.join(s + '.jsonl' for s in missing)}. Put the "
            f"GSM8K JSONL files there, or point at their folder with "
            f"--gin_param=\"Gsm8kTask.manual_dir='/path/to/gsm8k'\" or {ENV_VAR}=/path/to/gsm8k."
        )
    return path


def parse_row(line: str, where: str) -> dict[str, str]:
    """One JSONL line to the builder's features; errors name `where` (file:line)."""
    try:
        row = json.loads(line)
        question, answer = row["question"], row["answer"]
        if not isinstance(question, str) or not isinstance(answer, str):
            raise TypeError("question and answer must be strings")
        rationale, final = answer.rsplit("####", 1)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(
            f"{where}: bad GSM8K row ({type(e).__name__}: {e}); expected a JSON object with "
            f'string fields "question" and "answer", the answer ending in "#### <number>"'
        ) from e
    return {
        "question": question,
        "answer": answer,
        "rationale": rationale.strip(),
        "final_answer": final.strip().replace(",", ""),
    }


class Gsm8kManual(tfds.core.GeneratorBasedBuilder):
    """GSM8K read from manual_dir/{train,test}.jsonl; prepare with file_format="array_record"."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "GSM8K from local JSONL."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Place GSM8K's train.jsonl and test.jsonl in the manual dir \
(default ${ENV_VAR} or <repo>/../shared/data/gsm8k)."

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text()
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {k: text for k in ("question", "answer", "rationale", "final_answer")}
            ),
            homepage="https://github.com/openai/grade-school-math",
            disable_shuffling=True,  # record i is line i: reproducible and easy to cross-check
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        manual = resolve_manual_dir(dl_manager.manual_dir)
        return {s: self._generate_examples(manual / f"{s}.jsonl") for s in SPLITS}

    def _generate_examples(self, path: Path) -> Iterator[tuple[int, dict[str, str]]]:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if line.strip():
                    yield i, parse_row(line, f"{path}:{i + 1}")


def load_gsm8k(
    split: str, manual_dir: str | os.PathLike | None = None, data_dir: str | None = None
) -> Any:
    """A random-access source of GSM8K records (dicts of bytes), built on first use.

    Reads via `as_data_source` (array_record), never `as_dataset`, which would need TensorFlow.
    """
    builder = Gsm8kManual(data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
        config = tfds.download.DownloadConfig(manual_dir=str(resolve_manual_dir(manual_dir)))
        builder.download_and_prepare(download_config=config)
    return builder.as_data_source(split=split)


def record_to_problem(record: dict[str, Any]) -> Problem:
    """A TFDS record (text may come back as bytes) to a Problem; difficulty = rationale lines."""
    text = {k: v.decode() if isinstance(v, bytes) else v for k, v in record.items()}
    rationale = text["rationale"]
    return Problem(
        question=text["question"],
        answer=text["final_answer"],
        rationale=rationale,
        difficulty=sum(bool(ln.strip()) for ln in rationale.split("\n")),
    )


def is_validation(problem: Problem) -> bool:
    """Whether a train-file problem belongs to the validation split (one in 20, by hash)."""
    return hashed_split(problem.question, 20, valid=False) == "test"


@gin.configurable
class Gsm8kTask:
    """GSM8K word problems; steps are judged by re-running calculator annotations.

    `executor` (a `rewards.executor.Executor`) is optional because it owns worker
    processes; without it `check` still judges the answer but returns `steps=None`.
    """

    name = "gsm8k"

    def __init__(
        self,
        manual_dir: str | None = None,
        data_dir: str | None = None,
        prompt_template: str = "Question: {question}\nAnswer:\n",
        hint_template: str = "{question} (The answer is {hint}.)",
        executor: BatchExecutor | None = None,
    ):
        self.manual_dir = manual_dir
        self.data_dir = data_dir
        self.prompt_template = prompt_template
        self.hint_template = hint_template
        self.executor = executor

    def problems(self, split: str, seed: int) -> Iterator[Problem]:
        """Train (or a slice like "train[:100]"): endless, reshuffled each epoch; else one pass.
        "valid" is the one train row in 20 whose question hashes there (in file order), and
        "train" never yields those rows."""
        name = split.partition("[")[0]
        source = load_gsm8k("train" if name == "valid" else split, self.manual_dir,
                            self.data_dir)
        rows = input_pipeline(source, seed=seed, train=name == "train",
                              map_fn=record_to_problem)
        if name not in ("train", "valid"):
            yield from rows
            return
        yield from (p for p in rows if is_validation(p) == (name == "valid"))

    def problems_of_length(self, difficulty: int, n: int, seed: int, split: str = "test"
                           ) -> list[Problem]:
        """Up to n problems of `split` whose gold rationale has `difficulty` lines, in file
        order: the per-difficulty evaluation sets of STaR and `evaluate`."""
        found = []
        for p in self.problems(split, seed):
            if p.difficulty == difficulty:
                found.append(p)
                if len(found) == n:
                    break
        return found

    def from_question(self, question: str) -> Problem:
        """A word problem typed by a person; its answer is unknown ("")."""
        return Problem(question=question.strip(), answer="")

    def prompt(self, problem: Problem, hint: str | None = None) -> str:
        question = problem.question
        if hint is not None:
            question = self.hint_template.format(question=question, hint=hint)
        return self.prompt_template.format(question=question)

    def target(self, problem: Problem, rationale: str | None = None) -> str:
        text = problem.rationale if rationale is None else rationale
        return f"{(text or '').rstrip()}\n#### {problem.answer}"

    def check(self, problem: Problem, completion: str) -> Check:
        """Answer: `extract_answer` + numeric equality; steps: the calculator step checker."""
        answer = extract_answer(completion)
        correct = answer is not None and numbers_equal(answer, problem.answer)
        steps = None
        if self.executor is not None:
            steps = gsm8k_calculator_steps(completion.split("####", 1)[0], self.executor)
        return Check(answer=answer, correct=correct, steps=steps)
