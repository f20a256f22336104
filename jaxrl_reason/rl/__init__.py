"""RL for reasoning: advantage estimators, policy losses, loss aggregations, KL estimators and
rewards, each registered by name; the learner step, dynamic sampling and reference resets.
The job loop is `jaxrl_reason.rl.loop`; `python -m jaxrl_reason.rl` runs it."""
