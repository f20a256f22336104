"""Verifier training job: policy, sampled solutions, outcome / exact / Monte-Carlo labels, and
the ORM and PRMs trained on them (jaxrl_reason.verifiers.loop; docs/verifiers.md).

    python -m jaxrl_reason.train_verifier --gin_file=configs/verifier_chain.gin --workdir=DIR

Re-running the same command on DIR resumes it (after a kill too). Then search with
python -m jaxrl_reason.search --workdir=DIR --gin_file=configs/search_chain.gin.
"""

from jaxrl_reason import cli, registry  # noqa: F401  (registry: every configurable, for gin)
from jaxrl_reason.verifiers.loop import train_verifier

if __name__ == "__main__":
    cli.run(train_verifier, default_gin_file="verifier_chain.gin")
