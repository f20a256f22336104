"""Self-improvement (length generalization) job:

    python -m jaxrl_reason.self_improve --gin_file=configs/self_improve_addition.gin --workdir=DIR

Re-running the same command on the same workdir resumes at the round and step it reached.
"""

from jaxrl_reason import cli, registry  # noqa: F401  (registry: every configurable, for gin)
from jaxrl_reason.self_improve.loop import self_improve

if __name__ == "__main__":
    cli.run(self_improve, default_gin_file="self_improve_addition.gin")
