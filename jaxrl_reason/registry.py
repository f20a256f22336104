"""Imports every gin-configurable module, so any job can read any job's config.gin."""

from jaxrl_reason.algorithms import (  # noqa: F401
    common,
    rl,  # noqa: F401
    search,
    self_improve,  # noqa: F401
    sft,
    star,  # noqa: F401
    verifier,
)
from jaxrl_reason.data import addition, chain, gsm8k  # noqa: F401
from jaxrl_reason.models.hf import chat, checkpoint  # noqa: F401
from jaxrl_reason.rl import objective, rewards  # noqa: F401  (the "rl" loss, rewards by name)
from jaxrl_reason.sampling import sampler  # noqa: F401
from jaxrl_reason.training import checkpoints, optim, trainer  # noqa: F401
from jaxrl_reason.verifiers import losses  # noqa: F401  (registers the verifier losses)
