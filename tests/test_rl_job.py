"""The RL job end to end: `python -m jaxrl_reason.rl` killed with SIGKILL and started again on
its workdir ends exactly as an uninterrupted run (metrics, reset history, final policy,
reference and optimizer state)."""

import json
import os
import subprocess

import jax
import numpy as np
from conftest import REPO, checkpoint_saved, deterministic_metrics, job_command, kill_when

from jaxrl_reason import parallel
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.rl.objective import RLLoss
from jaxrl_reason.tokenizers import CharTokenizer
from jaxrl_reason.training.checkpoints import Checkpointer
from jaxrl_reason.training.optim import make_optimizer
from jaxrl_reason.training.trainer import Trainer

STEPS = 6
CFG = ModelConfig(vocab_size=CharTokenizer().vocab_size, d_model=32, n_layers=2, n_heads=4,
                  n_kv_heads=2, head_dim=8, d_ff=64, max_len=64)
MODEL = [f"ModelConfig.{k} = {getattr(CFG, k)}" for k in
         ("d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff", "max_len")]
# A random policy: the overlong reward (lengths vary) gives it something to learn (truncated
# rows train too, else a random policy may have none to train on); mu = 2 passes over 2
# mini-batches, a KL term, and a reference reset every 3 steps.
JOB = (f"rl.steps = {STEPS}", "rl.eval_every = 3", "rl.eval_problems = 8",
       "rl.pass_k_every = 3", "rl.pass_k_problems = 2", "rl.pass_ks = (1, 2)",
       "rl.eval_samples = 2", "rl.test_problems = 4", "rl.test_samples = 2",
       "rl.test_ks = (1, 2)",
       "rl.ckpt_every = 2",
       "ChainTask.min_steps = 1", "ChainTask.max_steps = 2",
       "rl_learner.prompts_per_step = 4", "rl_learner.group_size = 4",
       "rl_learner.max_new_tokens = 12", "rl_learner.num_iterations = 2",
       "rl_learner.mini_batches = 2", "rl_learner.reset_every = 3",
       "rl_learner.mask_truncated = False",
       "rl_learner.rewards = {'outcome': 1.0, 'overlong': 1.0}", "overlong_reward.cache = 10",
       "Trainer.reference = True", "RLLoss.kl_coef = 0.05",
       "make_optimizer.learning_rate = 1e-3", *MODEL)


def trainer() -> Trainer:
    return Trainer(CFG, make_optimizer(), parallel.make_mesh(devices=jax.devices()[:1]),
                   loss=RLLoss(), reference=True)




def final_state(workdir):
    ckpt = Checkpointer(str(workdir / "checkpoints"))
    state, extra = ckpt.restore(trainer().abstract_state, step=STEPS)
    ckpt.close()
    return jax.device_get(state), extra


def one_device_env() -> dict:
    """The job on one CPU device: the multi-device step is tested in test_rl_losses; here
    only the job's state handling is, and one device compiles and runs several times faster."""
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                     if "force_host_platform_device_count" not in f)
    return {**os.environ, "XLA_FLAGS": flags}


def test_rl_job_killed_with_sigkill_resumes_to_the_same_result(tmp_path):
    policy = tmp_path / "policy"
    ckpt = Checkpointer(str(policy / "checkpoints"))
    ckpt.save(0, trainer().init(0), force=True)
    ckpt.close()
    job = (*JOB, f"rl.policy_dir = '{policy}'")
    whole = subprocess.Popen(job_command("jaxrl_reason.rl", tmp_path / "whole", *job,
                                         gin_file="configs/rl_chain.gin"),
                             cwd=REPO, stdin=subprocess.DEVNULL, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=one_device_env())
    workdir = tmp_path / "killed"
    cmd = job_command("jaxrl_reason.rl", workdir, *job, gin_file="configs/rl_chain.gin")
    ckpts = workdir / "checkpoints"
    kill_when(cmd, checkpoint_saved(ckpts), "killed after its first checkpoint",
              env=one_device_env())
    killed = Checkpointer(str(ckpts))
    killed_at = killed.latest_step()
    killed.close()
    assert killed_at is not None and killed_at < STEPS
    whole_out, whole_err = whole.communicate(timeout=300)
    assert whole.returncode == 0, whole_err[-3000:]

    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                             stdin=subprocess.DEVNULL, env=one_device_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = deterministic_metrics(workdir)
    assert records == deterministic_metrics(tmp_path / "whole")
    assert [r["step"] for r in records] == list(range(STEPS + 1))
    assert [r["reset"] for r in records[1:]] == [0, 0, 1, 0, 0, 1]
    assert all(r["updates"] >= 1 for r in records[1:])  # it did train
    assert {"acc", "pass@1", "pass@2"} <= set(records[3])
    assert any(k.startswith("pass@2/") for k in records[6])  # per difficulty
    # the test split is read at step 0 and after the last step only, with standard errors
    tested = [r["step"] for r in records if "test/acc" in r]
    assert tested == [0, STEPS] and {"test/pass@2", "test/pass@2_se"} <= set(records[0])
    assert json.loads(resumed.stdout.splitlines()[-1]) == json.loads(whole_out.splitlines()[-1])
    (state, extra), (want, want_extra) = final_state(workdir), final_state(tmp_path / "whole")
    assert extra == want_extra and extra["resets"]["history"] == [3, 6]
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert (workdir / "rl.png").stat().st_size > 0

