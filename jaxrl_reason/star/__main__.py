"""STaR job: python -m jaxrl_reason.star [--gin_file=configs/star_addition.gin] --workdir=DIR

Without --gin_file it runs the embedded default, configs/star_addition.gin: STaR on 1-5 digit
addition with a tiny model on CPU (minutes). Re-running on the same workdir resumes.
"""

from jaxrl_reason import cli, registry  # noqa: F401  (registry: every configurable, for gin)
from jaxrl_reason.star.loop import star

if __name__ == "__main__":
    cli.run(star, default_gin_file="star_addition.gin")
