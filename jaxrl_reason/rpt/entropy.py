"""What a model thinks comes next at a position of a text: the entropy of its top-k next-token
distribution (RPT's hardness filter, k = 16) and its most likely token (next-token accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxrl_reason.training.trainer import Trainer


def topk_entropy(logits: jax.Array, k: int = 16) -> jax.Array:
    """Entropy (nats) of the softmax over the k largest logits, renormalized: [..., V] -> [...].
    A model sure of one token scores ~0; k equally likely tokens score log k."""
    top = jax.lax.top_k(logits, min(k, logits.shape[-1]))[0]
    logp = jax.nn.log_softmax(top, axis=-1)
    return -(jnp.exp(logp) * logp).sum(-1)


def contexts_batch(contexts: Sequence[Sequence[int]], bos_id: int, pad_id: int
                   ) -> dict[str, np.ndarray]:
    """Right-padded rows BOS + context, and where each row's last token is."""
    width = 1 + max(len(c) for c in contexts)
    tokens = np.full((len(contexts), width), pad_id, np.int32)
    mask = np.zeros((len(contexts), width), bool)
    for i, c in enumerate(contexts):
        tokens[i, :1 + len(c)] = (bos_id, *c)
        mask[i, :1 + len(c)] = True
    positions = np.broadcast_to(np.arange(width, dtype=np.int32), tokens.shape).copy()
    return {"tokens": tokens, "input_mask": mask, "positions": positions,
            "last": mask.sum(1).astype(np.int32) - 1}


def next_token_stats(trainer: Trainer, params, contexts: Sequence[Sequence[int]], bos_id: int,
                     pad_id: int, k: int = 16, rows: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(top-k entropy, argmax id) of the next token after each context, `rows` at a time."""
    @jax.jit
    def stats(params, batch):
        model = nnx.merge(trainer.graphdef, params)
        logits, _ = model(batch["tokens"], batch["positions"], batch["input_mask"])
        last = jnp.take_along_axis(logits, batch["last"][:, None, None], axis=1)[:, 0]
        return topk_entropy(last.astype(jnp.float32), k), last.argmax(-1)

    ent, top = [], []
    for start in range(0, len(contexts), rows):
        part = list(contexts[start:start + rows])
        part += [part[-1]] * (rows - len(part))  # one compiled shape per width
        e, t = jax.device_get(stats(params, contexts_batch(part, bos_id, pad_id)))
        n = min(rows, len(contexts) - start)
        ent.append(np.asarray(e)[:n])
        top.append(np.asarray(t)[:n])
    return np.concatenate(ent), np.concatenate(top)
