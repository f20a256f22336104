"""Absolute Zero self-play: buffers, the roles' rules, rewards by hand, proposals judged by
execution, and the job killed with SIGKILL resuming to the same result."""

import json
import random
import subprocess

import jax
import numpy as np
import pytest
from conftest import REPO, checkpoint_saved, deterministic_metrics, job_command, kill_when
from test_rl_job import one_device_env

from jaxrl_reason import parallel
from jaxrl_reason.azr import roles
from jaxrl_reason.azr.buffers import IDENTITY, Buffer, seed_triples
from jaxrl_reason.azr.loop import TIMING_PREFIXES
from jaxrl_reason.data.programs import TASK_TYPES, ProgramTask, Seed, seed_programs, split_of
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.rewards.executor import Executor
from jaxrl_reason.rl.objective import RLLoss
from jaxrl_reason.tokenizers import CharTokenizer
from jaxrl_reason.training.checkpoints import Checkpointer
from jaxrl_reason.training.optim import make_optimizer
from jaxrl_reason.training.trainer import Trainer


def triple(k: int) -> Seed:
    return Seed("", f"def f(a):\n    return a + {k}", ((str(k), str(2 * k)),))


def test_buffer_draws_are_keyed_without_replacement_and_survive_json():
    buf = Buffer()
    buf.add([triple(k) for k in range(10)], step=0)
    draws = [buf.draw(6, random.Random("s/3")) for _ in range(2)]
    assert draws[0] == draws[1]  # the same key, the same references
    assert len({t.program for t in draws[0]}) == 6  # without replacement
    assert buf.draw(6, random.Random("s/4")) != draws[0]
    assert len(buf.draw(50, random.Random(0))) == 10  # at most the whole buffer
    back = Buffer.from_json(json.loads(json.dumps(buf.to_json())))
    assert back.entries == buf.entries
    assert back.draw(6, random.Random("s/3")) == draws[0]


def test_solver_batch_takes_this_steps_triples_first_then_the_buffer():
    buf = Buffer()
    buf.add([triple(k) for k in range(6)], step=0)
    buf.add([triple(10), triple(11)], step=7)
    got = buf.solver_batch(4, 7, random.Random(0))
    assert got[:2] == [triple(11), triple(10)]  # newest first
    assert len(got) == 4 and len({t.program for t in got}) == 4  # older ones, no repeats
    assert all(t in [triple(k) for k in range(6)] for t in got[2:])
    assert buf.solver_batch(4, 7, random.Random(0)) == got
    # at a later step nothing is new: a sample of the whole buffer
    later = buf.solver_batch(8, 8, random.Random(1))
    assert len({t.program for t in later}) == 8
    small = Buffer([*Buffer().entries])
    small.add([triple(1)], step=0)
    assert small.solver_batch(3, 5, random.Random(0)) == [triple(1)] * 3  # fills by repeats


def test_seeds_never_include_the_test_split():
    train = seed_triples("train")
    assert train and all(split_of(s.program) == "train" for s in train)
    test_programs = {s.program for s in seed_programs() if split_of(s.program) == "test"}
    assert test_programs and not test_programs & {s.program for s in seed_triples("both")}
    assert seed_triples("identity") == [IDENTITY]


def test_learnability_both_variants_by_hand():
    assert roles.learnability([True, False, False, False], "paper") == 0.75
    assert roles.learnability([True] * 3 + [False] * 5, "authors") == 0.625
    for solved in ([True] * 8, [False] * 8):
        assert roles.learnability(solved, "paper") == 0.0
        assert roles.learnability(solved, "authors") == -0.5


def test_rewards_with_format_penalties():
    ok = roles.Judged("deduction", object(), roles.OK, triple(1))
    invalid = roles.Judged("deduction", object(), "nondeterministic")
    malformed = roles.Judged("deduction", None, roles.MALFORMED)
    assert [roles.proposer_reward(j, 0.75) for j in (ok, invalid, malformed)] == [
        0.75, -0.5, -1.0]
    assert roles.solver_reward("3", True) == 1.0
    assert roles.solver_reward("4", False) == -0.5
    assert roles.solver_reward(None, False) == -1.0


def test_every_reason_lands_in_its_bucket():
    for reason, name in [
        ("does not parse: SyntaxError", "syntax"), ("defines no top-level f", "not_one_function"),
        ("defines more than one function", "not_one_function"), ("imports os.path", "banned"),
        ("imports from os", "banned"), ("uses eval", "banned"), ("uses .__class__", "banned"),
        ("relative import", "banned"), ("no inputs", "bad_input"),
        ("reaches an attribute by a computed or private name", "banned"),
        ("input is not a literal argument list: 'x'", "bad_input"),
        ("fails, times out or exceeds a limit", "error_or_timeout"),
        ("nondeterministic", "nondeterministic"), (roles.MALFORMED, "malformed"),
        ("does not fit the model's context", "too_long"),
        ("equals a held-out test program", "held_out"), ("something new", "other")]:
        assert roles.bucket(reason) == name, reason


def test_sub_batches_are_the_six_role_task_pairs():
    assert len(set(roles.SUB_BATCHES)) == 6
    assert {roles.group_of(r, t) for r in roles.ROLES for t in TASK_TYPES} == set(range(6))


@pytest.fixture(scope="module")
def executor():
    try:
        ex = Executor(workers=2, timeout_s=1.0, memory_mb=128)
    except Exception as e:  # noqa: BLE001  (any failure to start the sandbox)
        pytest.skip(f"the sandbox does not start here: {e}")
    yield ex
    ex.close()


def proposer_problem(task_type: str, program: Seed | None = None):
    buffers = {t: Buffer() for t in TASK_TYPES}
    for t in TASK_TYPES:
        buffers[t].add([program or IDENTITY], 0)
    [p] = roles.proposer_problems(ProgramTask(compact=True), buffers, task_type, 1, 6,
                                  random.Random(0), lambda _: True, 4)
    return p


def test_proposals_land_in_their_buckets_and_only_valid_ones_enter_buffers(executor):
    task = ProgramTask(compact=True, executor=executor)
    held = "def f(s):\n    return s[::-1]"
    completions = {
        "valid": "<program>\ndef f(a, b):\n    return [x * b for x in a]\n</program>\n"
                 "<input>[1, 2], 3</input>",
        "malformed": "def f(a): return a",
        "syntax": "<program>def f(a) return a</program><input>1</input>",
        "banned": "<program>import os.path\ndef f(a):\n    return a</program><input>1</input>",
        "not_one_function": "<program>def g(a):\n    return a\ndef f(a):\n    return g(a)"
                            "</program><input>1</input>",
        "nondeterministic": "<program>def f(a):\n    return hash(object())</program>"
                            "<input>1</input>",
        "error_or_timeout": "<program>def f(a):\n    while True:\n        a += 1</program>"
                            "<input>1</input>",
        "bad_input": "<program>def f(a):\n    return a</program><input>len('ab')</input>",
        "held_out": f"<program>\n{held}\n</program><input>'ab'</input>",
        "too_long": f"<program>def f(a):\n    return a</program><input>'{'x' * 300}'</input>",
    }
    problems = [proposer_problem("deduction") for _ in completions]

    judged = roles.judge(task, executor, problems, list(completions.values()),
                         lambda prompt: len(prompt) < 300,  # the too-long input does not fit
                         {roles.normalized(held)}, 4)
    got = {name: ("valid" if j.valid else roles.bucket(j.reason))
           for name, j in zip(completions, judged, strict=True)}
    assert got == {name: name for name in completions}
    assert judged[0].triple.io == (("[1, 2], 3", "[3, 6]"),)
    assert [j.well_formed for j in judged[:2]] == [True, False]
    # induction: inputs and a message for a buffer program, outputs by running it
    double = Seed("", "def f(a):\n    return 2 * a", (("1", "2"),))
    p = proposer_problem("induction", double)
    assert double.program in task.prompt(p)
    [ind] = roles.judge(task, executor, [p],
                        ["<message>doubles</message><input>1</input><input>5</input>"],
                        lambda _: True, set(), 4)
    assert ind.valid and ind.triple == Seed("doubles", double.program, (("1", "2"),
                                                                         ("5", "10")))
    buffers = {t: Buffer() for t in TASK_TYPES}
    roles.admit(buffers, [*judged, ind], step=3)
    assert [e.triple for e in buffers["deduction"].entries] == [judged[0].triple]
    assert [e.triple for e in buffers["induction"].entries] == [ind.triple]
    assert len(buffers["abduction"]) == 0 and buffers["deduction"].entries[0].step == 3


def test_references_are_dropped_until_the_prompt_fits():
    task = ProgramTask(compact=True)
    buffers = {t: Buffer() for t in TASK_TYPES}
    buffers["abduction"].add([triple(k) for k in range(8)], 0)
    [p] = roles.proposer_problems(task, buffers, "abduction", 1, 6, random.Random(0),
                                  lambda prompt: prompt.count("<program>") <= 2, 4)
    assert p.meta["references"] == 2 and p.question.count("<program>") == 2


# ---- the job end to end --------------------------------------------------------------------
STEPS = 3
CFG = ModelConfig(vocab_size=CharTokenizer().vocab_size, d_model=32, n_layers=1, n_heads=2,
                  n_kv_heads=1, head_dim=16, d_ff=64, max_len=320)
MODEL = [f"ModelConfig.{k} = {getattr(CFG, k)}" for k in
         ("d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff", "max_len")]
# A random policy from a checkpoint (the SFT path), the buffers seeded with the train seeds
# too (so reference draws and solver batches depend on their keys), a checkpoint each step.
JOB = (f"azr.steps = {STEPS}", "azr.batch_per_task = 2", "azr.solver_samples = 2",
       "azr.references = 2", "azr.seeds = 'both'", "azr.eval_every = 2", "azr.ckpt_every = 1",
       "azr.test_problems = 4", "rl_learner.max_new_tokens = 8", "rl_learner.mini_batches = 2",
       "make_optimizer.learning_rate = 1e-2", "ProgramTask.compact = True", *MODEL)


def trainer() -> Trainer:
    return Trainer(CFG, make_optimizer(), parallel.make_mesh(devices=jax.devices()[:1]),
                   loss=RLLoss())


def final(workdir):
    ckpt = Checkpointer(str(workdir / "checkpoints"))
    state, extra = ckpt.restore(trainer().abstract_state, step=STEPS)
    ckpt.close()
    return jax.device_get(state["params"]), extra


def test_azr_job_killed_with_sigkill_resumes_to_the_same_result(tmp_path):
    policy = tmp_path / "policy"
    ckpt = Checkpointer(str(policy / "checkpoints"))
    ckpt.save(0, trainer().init(0), force=True)
    ckpt.close()
    job = (*JOB, f"azr.policy_dir = '{policy}'")
    cmd = lambda workdir: job_command("jaxrl_reason.azr", workdir, *job,  # noqa: E731
                                      gin_file="configs/azr.gin")
    whole = subprocess.Popen(cmd(tmp_path / "whole"), cwd=REPO, stdin=subprocess.DEVNULL,
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=one_device_env())
    workdir = tmp_path / "killed"
    kill_when(cmd(workdir), checkpoint_saved(workdir / "checkpoints"),
              "killed after its first checkpoint", env=one_device_env())
    whole_out, whole_err = whole.communicate(timeout=300)
    assert whole.returncode == 0, whole_err[-3000:]
    resumed = subprocess.run(cmd(workdir), cwd=REPO, capture_output=True, text=True,
                             timeout=300, stdin=subprocess.DEVNULL, env=one_device_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    records = deterministic_metrics(workdir, TIMING_PREFIXES)
    assert records == deterministic_metrics(tmp_path / "whole", TIMING_PREFIXES)
    assert [r["step"] for r in records] == list(range(STEPS + 1))
    assert [r["step"] for r in records if "test/solve" in r] == [0, 2, 3]
    step = records[1]
    assert {"propose/valid/induction", "propose/rejected/malformed", "solve/acc/abduction",
            "buffer/deduction/distinct", "reward/propose/induction", "executor/runs"} <= set(
        step)
    assert sum(v for k, v in step.items() if k.startswith("propose/rejected/")) == pytest.approx(
        1 - step["propose/valid"])
    assert all(r["updates"] >= 1 for r in records[1:])  # it did train
    assert json.loads(resumed.stdout.splitlines()[-1]) == json.loads(whole_out.splitlines()[-1])
    (params, extra), (want, want_extra) = final(workdir), final(tmp_path / "whole")
    assert extra == want_extra
    test_programs = {s.program for s in seed_programs() if split_of(s.program) == "test"}
    assert not test_programs & {e["program"] for b in extra["buffers"].values() for e in b}
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert (workdir / "azr.png").stat().st_size > 0
