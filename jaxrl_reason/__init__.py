"""jaxrl_reason: JAX-native self-improving language models, every reward from a real checker."""
