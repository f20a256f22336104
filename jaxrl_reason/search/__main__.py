"""Test-time search job: held-out accuracy of pass@1, majority vote, best-of-N and weighted
vote by ORM or PRM, PRM beam and lookahead search, against N and against generated tokens
(jaxrl_reason.search.loop; docs/verifiers.md).

    python -m jaxrl_reason.search --workdir=DIR [--gin_file=configs/search_chain.gin]
        [--gin_param='search.max_n = 256']

DIR is a train_verifier run: its config.gin rebuilds the policy and the task, and the results
go to DIR/search/ (scaling.json, scaling.png, tokens.png, convincing_wrong.jsonl). Re-running
resumes from what is cached there.
"""

from jaxrl_reason import cli, registry  # noqa: F401  (registry: every configurable, for gin)
from jaxrl_reason.search.loop import search

if __name__ == "__main__":
    cli.run(search, use_workdir_config=True)
