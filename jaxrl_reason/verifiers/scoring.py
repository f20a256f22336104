"""Scores from a trained verifier: per token, per step, per solution (the RL/search interface).

    verifier = load_verifier("runs/verifier/verifiers/prm")
    verifier.step_scores(examples, step_ends)   # P(step correct) at each step end
    verifier.outcome_scores(examples)           # P(solution correct)

The verifier is its own model (the policy's transformer family with a value head), on its own
params and shardings. Its prediction after reading token t is P(correct) under the link of the
loss it was trained with (`verifiers.losses`). A PRM's solution score aggregates its step
scores by `product` (Lightman et al.), `min` (Math-Shepherd) or `last` (Snell et al.); an ORM's
is its prediction at the last completion token (Cobbe et al.).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from jaxrl_reason import files, parallel
from jaxrl_reason.data.batching import Example, make_batch, round_up, step_ends
from jaxrl_reason.errors import UserError
from jaxrl_reason.models.transformer import ModelConfig, Transformer
from jaxrl_reason.training.checkpoints import read_params
from jaxrl_reason.verifiers.losses import LINKS, probabilities

AGGREGATES = ("product", "min", "last")
META_FILE = "verifier.json"
DEFAULT_VERIFIER = "prm"  # what `load_verifier` reads from a train_verifier job's root


def aggregate(step_scores: Sequence[float], how: str = "product") -> float:
    """A solution's score from its step scores; 0 for a solution without steps (it has no
    answer, so it is never preferred)."""
    if how not in AGGREGATES:
        raise ValueError(f"aggregate: how={how!r} must be one of {AGGREGATES}")
    s = np.asarray(step_scores, np.float64)
    if not len(s):
        return 0.0
    return float(np.prod(s) if how == "product" else s.min() if how == "min" else s[-1])


def abstract_params(cfg: ModelConfig, mesh: Mesh):
    """(graphdef, abstract params whose leaves carry their shardings on `mesh`)."""
    graphdef, params = nnx.split(nnx.eval_shape(lambda: Transformer(cfg, nnx.Rngs(0))),
                                 nnx.Param)
    shardings = parallel.state_shardings(params, mesh)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            params, shardings)
    return graphdef, abstract


@dataclasses.dataclass
class VerifierMeta:
    """What verifier.json records: enough to rebuild and use the verifier anywhere."""

    kind: str  # "orm" or "prm"
    loss: str  # the loss it was trained with, by name (verifiers.losses; fixes the link)
    labels: str  # outcome / exact / mc_hard / mc_soft
    model: dict  # ModelConfig fields
    delimiters: tuple[int, ...]  # step-end token ids
    stop_ids: tuple[int, ...]
    pad_id: int
    aggregate: str = "product"
    every_step: bool = False  # PRM supervised on every step (for aggregate "last")

    @classmethod
    def read(cls, workdir: str) -> VerifierMeta:
        row = files.read_json(files.path(workdir) / META_FILE)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in row.items()})

    def write(self, workdir: str) -> None:
        files.write_json(files.path(workdir) / META_FILE, dataclasses.asdict(self))


class Verifier:
    """A trained outcome (ORM) or process (PRM) verifier."""

    def __init__(self, meta: VerifierMeta, params, mesh: Mesh, batch_rows: int = 256):
        self.meta, self.kind, self.params, self.mesh = meta, meta.kind, params, mesh
        self.cfg = ModelConfig(**meta.model)
        self.batch_rows = batch_rows
        self.graphdef = abstract_params(self.cfg, mesh)[0]
        link = LINKS[meta.loss]

        def scores(params, tokens, positions, mask):
            _, values = nnx.merge(self.graphdef, params)(tokens, positions, mask)
            return probabilities(values, link)

        self._scores = jax.jit(scores, out_shardings=parallel.batch_sharding(mesh))

    def _rows(self, n: int) -> int:
        """Rows of a scoring batch: a power of two >= 8 that the mesh's batch split divides."""
        return round_up(max(8, 1 << max(n - 1, 0).bit_length()), parallel.batch_divisor(self.mesh))

    def token_scores(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """Per example, P(correct) after reading each completion token [len(completion)]."""
        out: list[np.ndarray | None] = [None] * len(examples)
        order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
        for start in range(0, len(order), self.batch_rows):
            part = order[start : start + self.batch_rows]
            longest = max(len(examples[i]) for i in part)
            batch = make_batch([examples[i] for i in part], round_up(longest, 16),
                               self.meta.pad_id, self._rows(len(part)))
            arrays = (batch["tokens"], batch["positions"], batch["input_mask"])
            with jax.set_mesh(self.mesh):
                probs = parallel.to_host(self._scores(self.params,
                                                      *parallel.put_global(arrays, self.mesh)))
            for r, i in enumerate(part):
                p, n = len(examples[i].prompt), len(examples[i])
                out[i] = np.asarray(probs[r, p:n], np.float64)
        return out

    def step_scores(self, examples: Sequence[Example], step_ends: Sequence[Sequence[int]]
                    ) -> list[np.ndarray]:
        """Per example, P(step correct) in [0, 1] at each step end (indices into the
        completion ids, as data.batching.step_ends returns them)."""
        tokens = self.token_scores(examples)
        return [t[np.asarray(e, np.int64)] for t, e in zip(tokens, step_ends, strict=True)]

    def steps_of(self, example: Example) -> list[int]:
        return step_ends(example.completion, self.meta.delimiters, self.meta.stop_ids)

    def outcome_scores(self, examples: Sequence[Example], how: str | None = None) -> np.ndarray:
        """Per example, P(solution correct) in [0, 1]: an ORM's prediction at the last
        completion token; a PRM's step scores aggregated (`how`, default its own), since a PRM
        is trained at step ends only."""
        tokens = self.token_scores(examples)
        if self.kind == "orm":
            return np.array([t[-1] if len(t) else 0.0 for t in tokens])
        return np.array([aggregate(t[np.asarray(self.steps_of(ex), np.int64)],
                                   how or self.meta.aggregate)
                         for t, ex in zip(tokens, examples, strict=True)])

    def last_scores(self, examples: Sequence[Example]) -> np.ndarray:
        """Per (partial) example, the prediction after its last token: the score of the prefix
        at its newest step (beam search)."""
        return np.array([t[-1] if len(t) else 0.0 for t in self.token_scores(examples)])


def verifier_dir(workdir: str) -> str:
    """A verifier's own directory: `workdir` itself when it holds verifier.json, else the
    train_verifier job's default one (workdir/verifiers/prm)."""
    if (files.path(workdir) / META_FILE).exists():
        return workdir
    default = files.path(workdir) / "verifiers" / DEFAULT_VERIFIER
    if (default / META_FILE).exists():
        return str(default)
    found = sorted(p.parent.name for p in (files.path(workdir) / "verifiers").glob(
        f"*/{META_FILE}")) if (files.path(workdir) / "verifiers").exists() else []
    raise UserError(f"no trained verifier in {workdir} (no {META_FILE}); "
                    + (f"pick one of {workdir}/verifiers/{{{','.join(found)}}}" if found else
                       "run python -m jaxrl_reason.train_verifier on it first"))


def load_verifier(workdir: str, step: int | None = None, mesh: Mesh | None = None) -> Verifier:
    """Reads a verifier's directory (verifier.json for the model shape and link, its
    checkpoint) onto `mesh` (default: all devices). A train_verifier job's root reads its PRM."""
    directory = verifier_dir(workdir)
    meta = VerifierMeta.read(directory)
    mesh = mesh if mesh is not None else parallel.make_mesh()
    _, abstract = abstract_params(ModelConfig(**meta.model), mesh)
    params, _ = read_params(files.path(directory) / "checkpoints", abstract, step)
    return Verifier(meta, params, mesh)
