"""Self-improvement (length generalization) job:

    python -m jaxrl_reason.self_improve --gin_file=configs/self_improve_addition.gin --workdir=DIR

Re-running the same command on the same workdir resumes at the round and step it reached.
"""

from jaxrl_reason import cli, registry  # noqa: F401  (registry registers every configurable)
from jaxrl_reason.algorithms import self_improve


def main() -> None:
    cli.run(self_improve.self_improve)


if __name__ == "__main__":
    main()
