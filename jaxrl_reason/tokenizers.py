"""Tokenizers behind one interface: characters for synthetic tasks, sentencepiece for text,
and a Hugging Face checkpoint's own tokenizer (with its chat template) for pretrained models.

Tokenizing happens on the host, never inside jit. `eos_id` ends a completion; `stop_ids` are
the sampler's stop tokens (eos, and for an HF checkpoint every end-of-turn id its generation
config names). Our own tokenizers pad with id 0; an HF one pads with its checkpoint's pad id.
"""

from __future__ import annotations

import io
import json
import os
import re
import string
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import gin
import sentencepiece as spm

from jaxrl_reason import files
from jaxrl_reason.errors import UserError


class Tokenizer(Protocol):
    pad_id: int
    bos_id: int
    eos_id: int
    stop_ids: tuple[int, ...]
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
        self.stop_ids = (self.eos_id,)

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

    def token_bytes(self, ids: Iterable[int]) -> list[bytes]:
        """Each id's UTF-8 bytes in running text (b"" for pad/bos/eos)."""
        return [self.alphabet[i - 3].encode() if i >= 3 else b"" for i in map(int, ids)]


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
        self.stop_ids = (self.eos_id,)

    @classmethod
    def train(
        cls, texts: Iterable[str], model_path: str, vocab_size: int = 1024, model_type: str = "bpe"
    ) -> SentencePieceTokenizer:
        """Trains a model on `texts` and writes it to `model_path` (ids: pad 0, bos 1, eos 2)."""
        proto = io.BytesIO()
        try:
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
        except RuntimeError as e:  # e.g. fewer ids than byte-fallback pieces + characters
            raise UserError(f"sentencepiece cannot train a vocabulary of {vocab_size}: "
                            f"{str(e).splitlines()[0].split('] ')[-1]}") from None
        files.write_atomic(model_path, proto.getvalue())
        return cls(model_path)

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self._sp.decode([i for i in ids if i != self.pad_id])

    def token_bytes(self, ids: Iterable[int]) -> list[bytes]:
        """Each id's bytes in running text: "\u2581" is the space it stands for, a byte-fallback
        piece <0xNN> its byte, control and unknown ids nothing. (A text's first piece carries
        the space sentencepiece adds in front of every text, which decoding drops.)"""
        out = []
        for i in map(int, ids):
            piece = self._sp.id_to_piece(i)
            if self._sp.is_byte(i):
                out.append(bytes([int(piece[3:5], 16)]))
            elif self._sp.is_control(i) or self._sp.is_unknown(i):
                out.append(b"")
            else:
                out.append(piece.replace("\u2581", " ").encode())
        return out


def _read_json(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _token_text(token: Any) -> str | None:
    """A tokenizer_config token entry: a string, or an AddedToken dict with "content"."""
    return token.get("content") if isinstance(token, dict) else token


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]


# The special-token names transformers passes to a chat template (its special_tokens_map).
_SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
            "mask_token")


@gin.configurable
class HFTokenizer:
    """The tokenizer of a Hugging Face model directory: `tokenizer.json` (the `tokenizers`
    library) or a sentencepiece `tokenizer.model`; special ids from tokenizer_config.json,
    then generation_config.json, then config.json; the chat template rendered as transformers
    renders it (`apply_chat_template`).

    No BOS/EOS is added by `encode`: `data.batching` adds them. A checkpoint without a pad
    token pads with EOS and one without a BOS (Qwen) starts prompts with its config's
    bos_token_id, else EOS. `vocab_size` counts the tokenizer's ids (added tokens included);
    a model's embedding may have more rows."""

    def __init__(self, path: str):
        self.path = path
        tok_config = _read_json(os.path.join(path, "tokenizer_config.json"))
        gen = _read_json(os.path.join(path, "generation_config.json"))
        model = _read_json(os.path.join(path, "config.json"))
        json_file, sp_file = (os.path.join(path, f) for f in ("tokenizer.json", "tokenizer.model"))
        added = {int(i): _token_text(t)
                 for i, t in tok_config.get("added_tokens_decoder", {}).items()}
        if os.path.exists(json_file):
            import tokenizers

            self._tok = tokenizers.Tokenizer.from_file(json_file)
            self._sp = None
            self._token_id = self._tok.token_to_id
            self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        elif os.path.exists(sp_file):
            self._tok = None
            self._sp = spm.SentencePieceProcessor(model_file=sp_file)
            self._added = {t: i for i, t in added.items()}
            self._token_id = lambda t: self._added.get(t, self._sp.piece_to_id(t)
                                                       if t is not None else None)
            self.vocab_size = max(self._sp.get_piece_size(), max(added, default=-1) + 1)
            # Added tokens are matched in text before sentencepiece sees it, as transformers does.
            self._split = re.compile("(" + "|".join(
                re.escape(t) for t in sorted(self._added, key=len, reverse=True)) + ")") \
                if self._added else None
        else:
            raise UserError(f"HFTokenizer: {path!r} has neither tokenizer.json nor "
                            "tokenizer.model")
        self.special_tokens = {name: _token_text(tok_config[name]) for name in _SPECIAL
                               if _token_text(tok_config.get(name)) is not None}

        def special_id(name: str) -> int | None:
            text = self.special_tokens.get(name)
            if text is not None:
                return self._token_id(text)
            ids = _ids(gen.get(f"{name}_id")) or _ids(model.get(f"{name}_id"))
            return ids[0] if ids else None

        eos = special_id("eos_token")
        if eos is None:
            raise UserError(f"HFTokenizer: {path!r} names no EOS token (tokenizer_config.json "
                            "eos_token or generation_config.json eos_token_id)")
        self.eos_id = eos
        self.bos_id = next(i for i in (special_id("bos_token"), eos) if i is not None)
        self.pad_id = next(i for i in (special_id("pad_token"), eos) if i is not None)
        extra = _ids(gen.get("eos_token_id")) or _ids(model.get("eos_token_id"))
        self.stop_ids = tuple(dict.fromkeys([eos, *extra]))
        special_added = [int(i) for i, t in tok_config.get("added_tokens_decoder", {}).items()
                         if isinstance(t, dict) and t.get("special")]
        self._special_ids = {*special_added, self.bos_id, self.pad_id, *self.stop_ids}
        self.chat_template = self._chat_template(tok_config)

    def _chat_template(self, tok_config: dict[str, Any]) -> str | None:
        jinja_file = os.path.join(self.path, "chat_template.jinja")
        if os.path.exists(jinja_file):  # transformers 5 saves it beside the config
            with open(jinja_file, encoding="utf-8") as f:
                return f.read()
        template = tok_config.get("chat_template") or _read_json(
            os.path.join(self.path, "chat_template.json")).get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            template = {t["name"]: t["template"] for t in template}.get("default")
        return template

    def encode(self, text: str) -> list[int]:
        if self._tok is not None:
            return self._tok.encode(text, add_special_tokens=False).ids
        if self._split is None:
            return self._sp.encode(text)
        ids: list[int] = []
        for piece in self._split.split(text):
            if piece in self._added:
                ids.append(self._added[piece])
            elif piece:
                ids.extend(self._sp.encode(piece))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text up to the first stop id, special tokens left out."""
        out = []
        for i in ids:
            i = int(i)
            if i in self.stop_ids:
                break
            if i not in self._special_ids:
                out.append(i)
        return self._tok.decode(out) if self._tok is not None else self._sp.decode(out)

    def apply_chat_template(self, messages: Sequence[dict[str, Any]],
                            add_generation_prompt: bool = False, **kwargs: Any) -> str:
        """The conversation as text, rendered as transformers' `apply_chat_template(...,
        tokenize=False)` renders it: the same jinja2 sandbox and options, the special tokens
        and `kwargs` as template variables."""
        if not self.chat_template:
            raise UserError(f"HFTokenizer: {self.path!r} has no chat template "
                            "(tokenizer_config.json chat_template or chat_template.jinja)")
        return _compile_chat_template(self.chat_template).render(
            messages=[dict(m) for m in messages], tools=None, documents=None,
            add_generation_prompt=add_generation_prompt, **{**self.special_tokens, **kwargs})


def _compile_chat_template(template: str):
    """transformers' chat-template environment: a sandbox that trims blocks, loop controls,
    `raise_exception`, `strftime_now`, and a tojson that does not escape HTML."""
    import datetime

    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env.from_string(template)
