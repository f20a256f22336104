"""Supervised fine-tuning job.

    python -m jaxrl_reason.sft --gin_file=configs/sft_addition.gin --workdir=DIR
"""

import os

from jaxrl_reason import (
    cli,
    registry,  # noqa: F401  (registers every configurable with gin)
)
from jaxrl_reason.sft import loop as sft


def main() -> None:
    cli.run(sft.sft, default_gin_file=os.path.join(cli.CONFIGS_DIR, "sft_addition.gin"))


if __name__ == "__main__":
    main()
