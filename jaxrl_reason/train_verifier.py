"""Verifier training job: policy, sampled solutions, outcome / exact / Monte-Carlo labels, and
the ORM and PRMs trained on them (jaxrl_reason.verifiers.loop; docs/verifiers.md).

    python -m jaxrl_reason.train_verifier --gin_file=configs/verifier_chain.gin --workdir=DIR

Re-running the same command on DIR resumes it (after a kill too). Then search with
python -m jaxrl_reason.search --workdir=DIR --gin_file=configs/search_chain.gin.
"""

import os

from jaxrl_reason import (
    cli,
    registry,  # noqa: F401  (registers every configurable with gin)
)
from jaxrl_reason.verifiers import loop as verifier


def main() -> None:
    cli.run(verifier.train_verifier,
            default_gin_file=os.path.join(cli.CONFIGS_DIR, "verifier_chain.gin"))


if __name__ == "__main__":
    main()
