"""RPT job: python -m jaxrl_reason.rpt [--gin_file=configs/rpt_gsm8k.gin] --workdir=DIR

Without --gin_file it runs the embedded default, configs/rpt_gsm8k.gin: tokenizer, proxy and
base pre-training on GSM8K's text, hard positions by the proxy's entropy, a format SFT, RPT
(GRPO on the prefix-match reward), and next-token training for the same FLOPs; report.json
and rpt.png compare them. Re-running on the same workdir resumes.
"""

from jaxrl_reason import cli, registry  # noqa: F401  (registry: every configurable, for gin)
from jaxrl_reason.rpt.loop import rpt

if __name__ == "__main__":
    cli.run(rpt, default_gin_file="rpt_gsm8k.gin")
