"""RL job: python -m jaxrl_reason.rl [--gin_file=configs/rl_addition.gin] --workdir=DIR

Without --gin_file it runs the embedded default, configs/rl_addition.gin: GRPO with the
checker's outcome reward and a format penalty, from a partly trained SFT policy on 2-digit
addition (train it first: python -m jaxrl_reason.sft --gin_file=configs/rl_addition_sft.gin
--workdir=runs/sft_add). Re-running on the same workdir resumes.
"""

from jaxrl_reason import cli, registry  # noqa: F401  (registry: every configurable, for gin)
from jaxrl_reason.rl.loop import rl

if __name__ == "__main__":
    cli.run(rl, default_gin_file="rl_addition.gin")
