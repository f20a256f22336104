"""Absolute Zero self-play: python -m jaxrl_reason.azr [--gin_file=configs/azr.gin] --workdir=DIR

Without --gin_file it runs configs/azr.gin: self-play from the SFT base of
configs/azr_sft.gin (train it first: python -m jaxrl_reason.sft --gin_file=configs/azr_sft.gin
--workdir=runs/azr_sft). Re-running on the same workdir resumes.
"""

from jaxrl_reason import cli, registry  # noqa: F401  (registry: every configurable, for gin)
from jaxrl_reason.azr.loop import azr

if __name__ == "__main__":
    cli.run(azr, default_gin_file="azr.gin")
