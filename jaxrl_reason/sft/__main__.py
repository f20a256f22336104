"""Supervised fine-tuning job.

    python -m jaxrl_reason.sft --gin_file=configs/sft_addition.gin --workdir=DIR
"""

from jaxrl_reason import cli, registry  # noqa: F401  (registry: every configurable, for gin)
from jaxrl_reason.sft.loop import sft

if __name__ == "__main__":
    cli.run(sft, default_gin_file="sft_addition.gin")
