"""jaxrl_reason: JAX-native self-improving language models, every reward from a real checker.

`jaxrl_reason.load(path)` opens a run's workdir or a Hugging Face model directory (api.py)."""


def load(path: str, step: int | None = None, bindings=()):
    """A ready model (params, config, tokenizer, `generate`, `logprobs`): see `api.load`."""
    from jaxrl_reason import api  # jax and the model only when asked for

    return api.load(path, step, bindings)
