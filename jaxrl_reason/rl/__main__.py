"""RL job: python -m jaxrl_reason.rl [--gin_file=configs/rl_chain.gin] --workdir=DIR

Without --gin_file it runs the embedded default, configs/rl_chain.gin: GRPO with outcome
rewards from an SFT policy on chain arithmetic (train it first with configs/sft_chain.gin).
Re-running on the same workdir resumes.
"""

import os

from jaxrl_reason import (
    cli,
    registry,  # noqa: F401  (registers every configurable with gin)
)
from jaxrl_reason.algorithms import rl


def main() -> None:
    cli.run(rl.rl, default_gin_file=os.path.join(cli.CONFIGS_DIR, "rl_chain.gin"))


if __name__ == "__main__":
    main()
