"""End to end on CPU: an imported checkpoint (our exporter's, with a tokenizer trained here)
starts SFT and STaR through `build.pretrained`; both sample, save, and resume from their own
checkpoints rather than the import; the trained weights export back."""

import json
import string

import gin
import jax
import numpy as np
import pytest
from flax import nnx

tokenizers = pytest.importorskip("tokenizers", reason="the hf extra is not installed")
pytest.importorskip("safetensors", reason="the hf extra is not installed")

from jaxrl_reason import common  # noqa: E402
from jaxrl_reason.data.addition import AdditionTask  # noqa: E402
from jaxrl_reason.export import export_run  # noqa: E402
from jaxrl_reason.models import hf  # noqa: E402
from jaxrl_reason.models.transformer import ModelConfig, Transformer  # noqa: E402
from jaxrl_reason.sft import loop as sft  # noqa: E402
from jaxrl_reason.star import loop as star  # noqa: E402

SPECIAL = ["<pad>", "<s>", "</s>"]
TRAINING = """
ModelConfig.dtype = "float32"
make_optimizer.schedule = "constant"
make_optimizer.warmup_steps = 1
compilation_cache.directory = None
build.pretrained = @HFCheckpoint()
"""


def fingerprint(params) -> float:
    return float(sum(np.asarray(x, np.float64).sum() for x in jax.tree.leaves(params)))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A Qwen2-family checkpoint with a character-level BPE tokenizer for the addition task."""
    path = tmp_path_factory.mktemp("qwen2_tiny")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Split("", "isolated")
    tok.decoder = tokenizers.decoders.Fuse()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=3 + len(string.printable),
                                             special_tokens=SPECIAL,
                                             initial_alphabet=list(string.printable))
    tok.train_from_iterator(["12+34,C0\nA:46"], trainer)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}))
    cfg = ModelConfig(vocab_size=tok.get_vocab_size(), d_model=32, n_layers=1, n_heads=2,
                      n_kv_heads=1, head_dim=16, d_ff=64, max_len=64, qkv_bias=True,
                      scale_embeddings=False, norm_eps=1e-6, rope_theta=1e4)
    params = jax.jit(lambda k: nnx.state(Transformer(cfg, nnx.Rngs(params=k)), nnx.Param))(
        jax.random.key(3))
    hf.export(params, cfg, str(path))
    assert json.loads((path / "config.json").read_text())["model_type"] == "qwen2"
    return path, fingerprint(params)


def spy_fit(monkeypatch, module):
    log = []
    real_fit = module.fit

    def spy(trainer, state, data, num_steps, **kw):
        log.append((int(state["step"]), fingerprint(state["params"])))
        return real_fit(trainer, state, data, num_steps, **kw)

    monkeypatch.setattr(module, "fit", spy)
    return log


def configure(path):
    gin.clear_config()
    gin.parse_config(TRAINING + f"HFCheckpoint.path = '{path}'\n")


def test_sft_starts_from_the_import_samples_and_resumes(checkpoint, tmp_path, monkeypatch):
    path, imported = checkpoint
    log = spy_fit(monkeypatch, sft)
    kwargs = dict(task=AdditionTask(1, 2), batch_size=8, max_len=48, ckpt_every=2,
                  eval_every=100, eval_problems=8, max_new_tokens=12, log_every=1)
    configure(path)
    first = sft.sft(str(tmp_path), steps=2, **kwargs)
    configure(path)
    sft.sft(str(tmp_path), steps=4, **kwargs)
    assert log[0] == (0, pytest.approx(imported))  # SFT began from the checkpoint's weights
    assert log[1][0] == 2 and log[1][1] != pytest.approx(imported)  # resumed, not re-imported
    assert {"acc", "acc/1", "acc/2"} <= set(first)  # greedy rollouts ran through the sampler

    configure(path)  # the export job: the run's latest weights as an HF directory
    out = export_run(str(tmp_path), str(tmp_path / "export"))
    s = common.build()
    trained, step = common.restore_params(s, str(tmp_path))
    assert step == 4
    again = hf.HFCheckpoint(out)
    reloaded = again.load_params(again.model_config(), s.trainer.params_shardings)
    assert fingerprint(reloaded) == pytest.approx(fingerprint(trained))
    assert fingerprint(trained) != pytest.approx(imported)
    assert (tmp_path / "export" / "tokenizer.json").exists()


def test_star_starts_from_the_import_and_resumes(checkpoint, tmp_path, monkeypatch):
    path, imported = checkpoint
    log = spy_fit(monkeypatch, star)
    kwargs = dict(task=AdditionTask(1, 2), seed_task=AdditionTask(1, 1), num_seed_examples=16,
                  base_steps=2, num_problems=8, first_steps=2, steps_add=0, batch_size=8,
                  max_len=48, max_new_tokens=12, eval_per_difficulty=4, difficulties=(1, 2),
                  temperature=1.0, ckpt_every=2)
    configure(path)
    history = star.star(str(tmp_path), iterations=1, **kwargs)
    configure(path)
    resumed = star.star(str(tmp_path), iterations=2, **kwargs)
    assert log[0] == (0, pytest.approx(imported))  # the base SFT began from the checkpoint
    assert [r["iteration"] for r in history] == [0, 1]
    assert [r["iteration"] for r in resumed] == [0, 1, 2]
    assert all(start != pytest.approx(imported) for _, start in log[1:])
