"""Errors a user can cause end a job with exit code 2 and one message naming the culprit.

Each case is a real `python -m jaxrl_reason.<job>` subprocess; they start together (most of
their time is importing) and each test checks one."""

import dataclasses
import inspect
import subprocess
import typing

import gin
import pytest
from conftest import REPO, job_command

from jaxrl_reason import cli, common, registry  # noqa: F401  (registry: every configurable)
from jaxrl_reason.errors import ConfigError, UserError, check_types
from jaxrl_reason.models.transformer import ModelConfig
from jaxrl_reason.rl.learner import LearnerConfig
from jaxrl_reason.rl.objective import RLLoss
from jaxrl_reason.sampling.sampler import SamplingConfig
from jaxrl_reason.training.optim import make_optimizer

SFT, GIN_FILE = "jaxrl_reason.sft", "configs/sft_addition.gin"
CASES = {  # name: (job, gin file, gin bindings)
    "unknown_parameter": (SFT, GIN_FILE, ["sft.no_such_arg = 1"]),
    "unknown_configurable": (SFT, GIN_FILE, ["NoSuchThing.steps = 1"]),
    "missing_gin_file": (SFT, "configs/no_such_config.gin", []),
    "missing_gsm8k_dir": (SFT, GIN_FILE, ["sft.task = @Gsm8kTask()",
                                          "Gsm8kTask.manual_dir = '{tmp}/no_gsm8k_here'",
                                          "Gsm8kTask.data_dir = '{tmp}/tfds'"]),  # nothing there
    "mesh_does_not_divide": (SFT, GIN_FILE, ["make_mesh.data = 3"]),  # on 8 devices
    "required_binding_missing": (SFT, "configs/star_addition.gin", []),  # binds no sft.task
    "sample_without_checkpoint": ("jaxrl_reason.sample", None, []),
    # config values of the wrong type or range: one line naming the binding, not a traceback
    "type_error": ("jaxrl_reason.star", None, ['star.iterations = "x"']),
    "negative_size": (SFT, GIN_FILE, ["ModelConfig.d_model = -5"]),
    "bad_schedule": (SFT, GIN_FILE, ["make_optimizer.schedule = 'linear'"]),
    "bad_estimator": ("jaxrl_reason.rl", None, ["rl_learner.advantage = 'nope'"]),
    "bad_mode": ("jaxrl_reason.star", None, ["star.mode = 'nope'"]),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    procs = {}
    for name, (job, gin_file, params) in CASES.items():
        cmd = job_command(job, tmp / name, *(p.format(tmp=tmp) for p in params),
                          gin_file=gin_file)
        procs[name] = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        out[name] = (proc.returncode, stdout + stderr, tmp)
    return out


def error_line(result) -> str:
    rc, output, _ = result
    assert rc == 2, output
    assert "Traceback" not in output, output
    lines = [ln for ln in output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, output
    return lines[0]


def test_unknown_gin_parameter(results):
    line = error_line(results["unknown_parameter"])
    assert "no_such_arg" in line and "bad gin config" in line


def test_unknown_gin_configurable(results):
    assert "NoSuchThing" in error_line(results["unknown_configurable"])


def test_missing_gin_file(results):
    line = error_line(results["missing_gin_file"])
    assert "configs/no_such_config.gin" in line and "no such file" in line


def test_missing_gsm8k_manual_dir(results):
    line = error_line(results["missing_gsm8k_dir"])
    tmp = results["missing_gsm8k_dir"][2]
    assert f"{tmp}/no_gsm8k_here" in line and "train.jsonl" in line
    assert "Gsm8kTask.manual_dir" in line  # says how to fix it


def test_mesh_that_does_not_divide_the_devices(results):
    line = error_line(results["mesh_does_not_divide"])
    assert "make_mesh" in line and "8 devices" in line


def test_required_binding_missing(results):
    line = error_line(results["required_binding_missing"])
    assert "`sft`" in line and "'task'" in line and "--gin_file" in line


def test_sample_without_a_checkpoint(results):
    assert "no checkpoint" in error_line(results["sample_without_checkpoint"])


@pytest.mark.parametrize("name, expected", [
    ("type_error", "star.iterations='x' must be int (got str)"),
    ("negative_size", "ModelConfig.d_model=-5 must be a positive integer"),
    ("bad_schedule", "make_optimizer.schedule='linear' must be one of 'cosine', 'constant'"),
    ("bad_estimator", "rl_learner.advantage='nope' must be one of ["),
    ("bad_mode", "star.mode='nope' must be one of 'star', 'direct'"),
])
def test_bad_config_values_end_in_one_line(results, name, expected):
    assert expected in error_line(results[name])


def _bound_values_fit_their_types() -> None:
    """Every binding of the parsed config against its configurable's annotations (types and
    Literal choices), then the config objects built, so their range checks run too."""
    for (_, selector), values in gin.config._CONFIG.items():  # gin has no public iterator
        fn = inspect.unwrap(gin.config._REGISTRY.get_match(selector).wrapped)
        target = fn.__init__ if inspect.isclass(fn) and not dataclasses.is_dataclass(fn) else fn
        built = {k: v for k, v in values.items()  # a reference (`@AdditionTask()`) is checked
                 if not isinstance(v, gin.config.ConfigurableReference)}  # when it is built
        check_types(selector.rsplit(".", 1)[-1], built, typing.get_type_hints(target))
    ModelConfig()
    make_optimizer()
    SamplingConfig()
    if "rl.task" in gin.config_str():  # an RL config: its learner settings and reference
        cfg, loss = LearnerConfig(), RLLoss()
        cfg.sampling()
        if cfg.uses_reference or loss.kl_coef > 0:
            assert gin.query_parameter("Trainer.reference"), "needs Trainer.reference = True"


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.gin")))
def test_every_shipped_config_parses_and_validates(name, monkeypatch):
    """A typo in a shipped config (an unknown configurable or parameter, a value of the wrong
    type, a choice that does not exist) fails here, not in a user's run; `include` paths are
    relative to the repo root, as the README runs them."""
    monkeypatch.chdir(REPO)
    gin.clear_config()
    try:
        gin.parse_config_file(f"configs/{name}")
        _bound_values_fit_their_types()
    finally:
        gin.clear_config()


@pytest.mark.parametrize("binding, match", [
    ("star.mode = 'drect'", "star.mode='drect' must be one of"),
    ("ModelConfig.position_encoding = 'nope'", "position_encoding='nope'"),
    ("star.iterations = 2.5", "star.iterations=2.5 must be int"),
])
def test_config_validation_catches_a_typo(binding, match, monkeypatch):
    monkeypatch.chdir(REPO)
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings(["configs/star_addition.gin"], [binding])
        with pytest.raises(ConfigError, match=match):
            _bound_values_fit_their_types()
    finally:
        gin.clear_config()


def test_a_run_started_from_another_takes_its_model_unless_it_binds_its_own(tmp_path):
    """common.inherit_model: the SFT run's ModelConfig and tokenizer bindings (its operative
    config.gin, multi-line values included) apply where the RL config binds nothing; the RL
    config's own bindings win; scoped bindings and other configurables are not taken."""
    (tmp_path / "config.gin").write_text(
        "ModelConfig.d_model = 48\nModelConfig.n_layers = 3\nModelConfig.value_head = False\n"
        "CharTokenizer.alphabet = \\\n    '0123456789+=\\n'\nlarge/ModelConfig.d_ff = 99\n"
        "make_optimizer.learning_rate = 0.5\n")
    gin.clear_config()
    try:
        gin.parse_config("ModelConfig.value_head = True\nmake_optimizer.learning_rate = 0.1")
        bound = common.inherit_model(str(tmp_path))
        assert sorted(bound) == ["CharTokenizer.alphabet", "ModelConfig.d_model",
                                 "ModelConfig.n_layers"]
        cfg = ModelConfig(vocab_size=20)
        assert (cfg.d_model, cfg.n_layers, cfg.value_head) == (48, 3, True)
        assert gin.query_parameter("CharTokenizer.alphabet") == "0123456789+=\n"
        assert gin.query_parameter("make_optimizer.learning_rate") == 0.1
        assert common.inherit_model(str(tmp_path / "nowhere")) == []
    finally:
        gin.clear_config()


def test_a_run_of_an_earlier_version_stays_readable(tmp_path):
    """Bindings earlier versions wrote into a run's config.gin and that no longer exist
    (Trainer.loss, the verifier job's scope-era switches) are dropped when the run is read
    back; a binding that never existed still fails in one line."""
    config = tmp_path / "config.gin"
    config.write_text("Trainer.loss = 'sft'\nTrainer.grad_accum = 2\n"
                      "train_verifier.large_policy = True\nverifier_loss.lm_weight = 0.0\n"
                      "large/ModelConfig.d_model = 128\n")
    gin.clear_config()
    try:
        cli.parse_gin([], [], run_config=str(config))
        assert gin.query_parameter("Trainer.grad_accum") == 2
        config.write_text("Trainer.nope = 1\n")
        with pytest.raises(UserError, match="bad gin config"):
            cli.parse_gin([], [], run_config=str(config))
    finally:
        gin.clear_config()


def test_inheriting_a_binding_this_version_lacks_is_one_line(tmp_path):
    (tmp_path / "config.gin").write_text("ModelConfig.bogus_field = 3\n")
    gin.clear_config()
    try:
        with pytest.raises(UserError, match="ModelConfig.bogus_field"):
            common.inherit_model(str(tmp_path))
    finally:
        gin.clear_config()
