"""Supervised fine-tuning job.

    python -m jaxrl_reason.sft --gin_file=configs/sft_addition.gin --workdir=DIR
"""

from jaxrl_reason import (
    cli,
    registry,  # noqa: F401  (registers every configurable with gin)
)
from jaxrl_reason.algorithms import sft


def main() -> None:
    cli.run(sft.sft)


if __name__ == "__main__":
    main()
