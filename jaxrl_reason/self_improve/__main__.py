"""Self-improvement (length generalization) job:

    python -m jaxrl_reason.self_improve --gin_file=configs/self_improve_addition.gin --workdir=DIR

Re-running the same command on the same workdir resumes at the round and step it reached.
"""

import os

from jaxrl_reason import cli, registry  # noqa: F401  (registry registers every configurable)
from jaxrl_reason.self_improve import loop as self_improve


def main() -> None:
    default = os.path.join(cli.CONFIGS_DIR, "self_improve_addition.gin")
    cli.run(self_improve.self_improve, default_gin_file=default)


if __name__ == "__main__":
    main()
