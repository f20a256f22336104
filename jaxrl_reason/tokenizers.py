"""Tokenizers behind one interface: characters for synthetic tasks, sentencepiece for text.

Tokenizing happens on the host, never inside jit. Id 0 is always padding; `eos_id` ends a
completion and is the sampler's stop token.
"""

from __future__ import annotations

import io
import os
import string
from collections.abc import Iterable
from typing import Protocol

import gin
import sentencepiece as spm

from jaxrl_reason import files


class Tokenizer(Protocol):
    pad_id: int
    bos_id: int
    eos_id: int
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


@gin.configurable
class CharTokenizer:
    """One id per character of a fixed alphabet (printable ASCII by default), plus pad/bos/eos.

    Unknown characters raise: a synthetic task that emits one has a bug worth seeing."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, alphabet: str = string.printable[:-2]):
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("CharTokenizer.alphabet has repeated characters")
        self.alphabet = alphabet
        self._ids = {c: i + 3 for i, c in enumerate(alphabet)}
        self.vocab_size = len(alphabet) + 3

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError as e:
            raise ValueError(
                f"CharTokenizer: character {e.args[0]!r} is not in the alphabet"
            ) from e

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i >= 3:
                out.append(self.alphabet[i - 3])
        return "".join(out)


@gin.configurable
class SentencePieceTokenizer:
    """A sentencepiece model (BPE or unigram) with byte fallback, so no text is unencodable."""

    def __init__(self, model_path: str):
        if not os.path.exists(model_path):
            raise FileNotFoundError(
                f"SentencePieceTokenizer: no model at {model_path!r}; train one with "
                "SentencePieceTokenizer.train(...) or set SentencePieceTokenizer.model_path"
            )
        self._sp = spm.SentencePieceProcessor(model_file=model_path)
        self.pad_id, self.bos_id, self.eos_id = (
            self._sp.pad_id(),
            self._sp.bos_id(),
            self._sp.eos_id(),
        )
        self.vocab_size = self._sp.get_piece_size()

    @classmethod
    def train(
        cls, texts: Iterable[str], model_path: str, vocab_size: int = 1024, model_type: str = "bpe"
    ) -> SentencePieceTokenizer:
        """Trains a model on `texts` and writes it to `model_path` (ids: pad 0, bos 1, eos 2)."""
        proto = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=proto,
            vocab_size=vocab_size,
            model_type=model_type,
            byte_fallback=True,
            pad_id=0,
            bos_id=1,
            eos_id=2,
            unk_id=3,
            character_coverage=1.0,
            hard_vocab_limit=False,
            minloglevel=2,
        )
        files.write_atomic(model_path, proto.getvalue())
        return cls(model_path)

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self._sp.decode([i for i in ids if i != self.pad_id])
