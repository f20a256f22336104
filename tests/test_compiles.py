"""A run compiles a bounded number of programs: one train step per batch shape (length
bucket) for the whole STaR run, whatever the number of iterations and their schedules (the
learning rate is an argument of the step), one optimizer reset, one init. Counted with a
jax.monitoring listener on XLA compilations (a persistent-cache load counts too)."""

import collections

import jax
import pytest
from test_star import TINY, ScriptedSampler, _run  # noqa: F401  (TINY: the tiny model config)

from jaxrl_reason import common
from jaxrl_reason.data.addition import AdditionTask

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@pytest.fixture
def compiles():
    counts: collections.Counter = collections.Counter()

    def listener(event, duration, **kw):
        if event == BACKEND_COMPILE:
            counts[kw.get("fun_name")] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield counts
    jax.monitoring.unregister_event_duration_listener(listener)


def test_star_compiles_the_train_step_once_per_length_bucket(tmp_path, monkeypatch, compiles):
    shapes = set()
    real_build = common.build

    def build():
        s = real_build()
        s.sampler = ScriptedSampler(s.tok, AdditionTask(1, 2))
        real_step = s.trainer.train_step

        def train_step(state, batch, lr):
            shapes.add(batch["tokens"].shape)
            return real_step(state, batch, lr)

        s.trainer.train_step = train_step
        return s

    monkeypatch.setattr(common, "build", build)
    history = _run(tmp_path, iterations=3, first_steps=4, steps_add=3)
    assert [r["iteration"] for r in history] == [0, 1, 2, 3]
    assert [r["steps"] for r in history[1:]] == [4, 7, 10]  # three different schedules
    assert compiles["jit(_train_step)"] == len(shapes)
    assert 1 <= len(shapes) <= 3  # 16-token buckets of examples up to 48 tokens
    assert compiles["jit(_fresh_state)"] == 1 and compiles["jit(_init_fn)"] == 1
