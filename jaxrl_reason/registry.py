"""Imports every gin-configurable module, so any job can read any job's config.gin."""

from jaxrl_reason import common  # noqa: F401
from jaxrl_reason.azr import loop as azr  # noqa: F401
from jaxrl_reason.data import addition, chain, chat, gsm8k, programs  # noqa: F401
from jaxrl_reason.models.hf import checkpoint  # noqa: F401
from jaxrl_reason.rl import loop as rl  # noqa: F401
from jaxrl_reason.rl import objective, rewards  # noqa: F401  (RLLoss, rewards by name)
from jaxrl_reason.rpt import loop as rpt  # noqa: F401
from jaxrl_reason.sampling import sampler  # noqa: F401
from jaxrl_reason.search import loop as search  # noqa: F401
from jaxrl_reason.self_improve import loop as self_improve  # noqa: F401
from jaxrl_reason.sft import loop as sft  # noqa: F401
from jaxrl_reason.star import loop as star  # noqa: F401
from jaxrl_reason.training import checkpoints, optim, trainer  # noqa: F401
from jaxrl_reason.verifiers import loop as verifier  # noqa: F401
