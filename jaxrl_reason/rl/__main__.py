"""RL job: python -m jaxrl_reason.rl [--gin_file=configs/rl_addition.gin] --workdir=DIR

Without --gin_file it runs the embedded default, configs/rl_addition.gin: GRPO with the
checker's outcome reward and a format penalty, from a partly trained SFT policy on 2-digit
addition (train it first: python -m jaxrl_reason.sft --gin_file=configs/rl_addition_sft.gin
--workdir=runs/sft_add). Re-running on the same workdir resumes.
"""

import os

from jaxrl_reason import (
    cli,
    registry,  # noqa: F401  (registers every configurable with gin)
)
from jaxrl_reason.rl import loop as rl


def main() -> None:
    cli.run(rl.rl, default_gin_file=os.path.join(cli.CONFIGS_DIR, "rl_addition.gin"))


if __name__ == "__main__":
    main()
