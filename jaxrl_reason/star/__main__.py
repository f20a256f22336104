"""STaR job: python -m jaxrl_reason.star [--gin_file=configs/star_addition.gin] --workdir=DIR

Without --gin_file it runs the embedded default, configs/star_addition.gin: STaR on 1-5 digit
addition with a tiny model on CPU (minutes). Re-running on the same workdir resumes.
"""

import os

from jaxrl_reason import (
    cli,
    registry,  # noqa: F401  (registers every configurable with gin)
)
from jaxrl_reason.star import loop as star


def main() -> None:
    cli.run(star.star, default_gin_file=os.path.join(cli.CONFIGS_DIR, "star_addition.gin"))


if __name__ == "__main__":
    main()
