"""The tunix half of scripts/bench_grpo_step.py; runs under tunix's own interpreter, never ours.

Reads one JSON line (the shape, the prompts, the GRPO settings), builds tunix's Llama3 with
random weights (scripts/_bench_tunix_side.py), an `RLCluster` with one mesh for actor, rollout
and reference (the colocated setup of tunix's own GRPO tests and demos, vanilla rollout engine)
and a `GRPOLearner`, then calls `GRPOLearner.train` once on a dataset that hands out one batch
of prompts per training step and is driven from stdin: it runs the warm-up steps (the first
compiles) and answers {"ready": ...}, then each line {"steps": k} gets k more steps, answered
with each step's wall and CPU seconds and its phases; end of input ends the dataset and so
`train`.

A step is what `train` does between two batches drawn from the dataset: sampling, rewards and
advantages, the log-prob passes it makes, the update(s), tunix's own metric logging. Its phases
are tunix's calls, each timed until its outputs are ready: `RLCluster.generate` (sample),
`GRPOLearner._compute_rewards` (score), `RLCluster.get_old_per_token_logps` and
`get_ref_per_token_logps` (logprobs; tunix makes the first only when num_iterations > 1, the
second only when beta > 0) and `RLCluster.update_actor` (update, until the actor's weights are
ready).
"""

from __future__ import annotations

import json
import sys
import time

import _bench_common as common
from _bench_tunix_side import IdTokenizer, build_model


def first_id_is_even(completion: str) -> float:
    """The benchmark's checker (the same on our side): 1 if the first generated id is even."""
    ids = completion.split()
    return float(bool(ids) and int(ids[0]) % 2 == 0)


class Steps:
    """The training dataset: one {"prompts": [B texts]} per step, for as many steps as stdin
    asks; records each step's wall and CPU seconds (from drawing its batch to drawing the next,
    time spent waiting on stdin excluded) and answers each request once its steps are done."""

    def __init__(self, prompts: list[str], warmup: int, phases: dict[str, list[float]],
                 ready: dict):
        import numpy as np

        self.batch = {"prompts": np.array(prompts)}
        self.left, self.phases, self.ready = warmup, phases, ready
        self.started: tuple[float, float] | None = None
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self.started is not None:
            self.wall.append(time.perf_counter() - self.started[0])
            self.cpu.append(time.process_time() - self.started[1])
        if self.left == 0:
            if self.ready is not None:
                print(json.dumps(self.ready), flush=True)
                self.ready = None
            else:
                print(json.dumps({"step": self.wall, "step_cpu": self.cpu, **self.phases}),
                      flush=True)
            line = sys.stdin.readline()
            if not line:
                raise StopIteration
            self.left = json.loads(line)["steps"]
            self.wall, self.cpu = [], []
            for times in self.phases.values():
                times.clear()
        self.left -= 1
        self.started = (time.perf_counter(), time.process_time())
        return self.batch


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    import jax
    import optax
    import tunix
    from flax import nnx
    from tunix.rl import rl_cluster as rl_cluster_lib
    from tunix.rl.grpo import grpo_learner
    from tunix.rl.rollout import base_rollout

    model = build_model(spec)
    mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), devices=jax.devices()[:1],
                         axis_types=(jax.sharding.AxisType.Auto,) * 2)
    role = rl_cluster_lib.Role
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(spec["lr"], b1=0.9, b2=0.98, weight_decay=0.01))
    cluster = rl_cluster_lib.RLCluster(
        actor=model, reference=build_model(spec) if spec["beta"] > 0 else None,
        tokenizer=IdTokenizer(),
        cluster_config=rl_cluster_lib.ClusterConfig(
            role_to_mesh={role.ACTOR: mesh, role.REFERENCE: mesh, role.ROLLOUT: mesh},
            rollout_engine="vanilla", offload_to_cpu=False,
            training_config=rl_cluster_lib.RLTrainingConfig(
                actor_optimizer=optimizer, eval_every_n_steps=10**9, max_steps=10**9,
                pbar_description=None),
            rollout_config=base_rollout.RolloutConfig(
                max_tokens_to_generate=spec["gen_len"], max_prompt_length=spec["prompt_len"],
                kv_cache_size=spec["prompt_len"] + spec["gen_len"],
                temperature=spec["temperature"], top_p=1.0, top_k=None)))

    def reward(prompts, completions, **_):
        return [first_id_is_even(c) for c in completions]

    learner = grpo_learner.GRPOLearner(
        rl_cluster=cluster, reward_fns=reward,
        algo_config=grpo_learner.GRPOConfig(
            num_generations=spec["group"], num_iterations=spec["num_iterations"],
            beta=spec["beta"], epsilon=0.2, loss_agg_mode="token-mean"))
    phases = common.timed_phases(cluster, {"generate": "sample",
                                           "get_old_per_token_logps": "logprobs",
                                           "get_ref_per_token_logps": "logprobs"})
    phases.update(common.timed_phases(learner, {"_compute_rewards": "score"}))
    phases.update(common.timed_phases(cluster, {"update_actor": "update"},
                                      ready=lambda: nnx.state(cluster.actor_trainer.model)))
    ready = {"ready": True, "tunix": tunix.__file__, "jax": jax.__version__,
             "devices": str(jax.devices())}
    steps = Steps([" ".join(map(str, p)) for p in spec["prompts"]], spec["warmup"], phases,
                  ready)
    learner.train(steps)


if __name__ == "__main__":
    main()
