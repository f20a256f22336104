"""A run's trained weights as a Hugging Face checkpoint that transformers loads.

    python -m jaxrl_reason.export --workdir=RUN --out=DIR [--step=N]

Rebuilds the run's model from its config.gin, restores the checkpoint (latest, or --step),
and exports it; a run that started from an HF checkpoint (`build.pretrained`) keeps that
checkpoint's config, generation config and tokenizer files. A value head is written beside
the model (value_head.safetensors).
"""

from __future__ import annotations

from absl import flags

from jaxrl_reason import (
    cli,
    common,
    registry,  # noqa: F401  (registers every configurable with gin)
)
from jaxrl_reason.errors import UserError
from jaxrl_reason.models.hf.export import export

flags.DEFINE_string("out", None, "Directory to write the Hugging Face checkpoint to.")


def export_run(workdir: str, out: str | None, step: int | None = None) -> str:
    """Exports the run in `workdir` (its gin config already parsed) to `out`; returns out."""
    if not out:
        raise UserError("--out is required (the directory to write the checkpoint to)")
    s = common.build()
    params, restored = common.restore_params(s, workdir, step)
    like = s.pretrained.path if s.pretrained is not None else None
    export(params, s.model_cfg, out, like=like)
    print(f"exported step {restored} of {workdir} to {out}")
    return out


if __name__ == "__main__":
    cli.run(lambda workdir: export_run(workdir, flags.FLAGS.out, flags.FLAGS.step),
            use_workdir_config=True)
