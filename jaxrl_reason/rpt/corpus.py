"""A text corpus as documents split into train / valid / test by a stable hash of each
document, and its tokens cut into windows for next-token training.

Any text file works: `.jsonl` (a document per line: its "text" field, else its string fields
joined by a space, e.g. GSM8K's question and answer) or plain text (documents separated by
blank lines).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from jaxrl_reason import files
from jaxrl_reason.data.batching import Example
from jaxrl_reason.data.tasks import hashed_split
from jaxrl_reason.errors import UserError


def read_documents(path: str) -> list[str]:
    """The non-empty documents of a .jsonl or plain-text file, in file order."""
    p = files.path(path)
    if not p.exists():
        raise UserError(f"rpt.corpus={path!r}: no such file (a .jsonl of documents or a text "
                        "file with documents separated by blank lines)")
    text = p.read_text(encoding="utf-8")
    if not str(path).endswith(".jsonl"):
        return [d.strip() for d in text.split("\n\n") if d.strip()]
    docs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not a JSON line ({e.msg})") from None
        doc = row.get("text") if isinstance(row, dict) else None
        if doc is None and isinstance(row, dict):
            doc = " ".join(v for v in row.values() if isinstance(v, str))
        if not isinstance(doc, str):
            raise UserError(f"{path}:{n}: a document must be a JSON object with string fields")
        if doc.strip():
            docs.append(doc.strip())
    return docs


def split_documents(docs: Sequence[str]) -> dict[str, list[str]]:
    """{train, valid, test}: one document in ten each for valid and test, by the hash of its
    text, so no seed puts a held-out document into training."""
    out: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for d in docs:
        out[hashed_split(d)].append(d)
    for split, part in out.items():
        if not part:
            raise UserError(f"the corpus has {len(docs)} documents, none in the {split} split; "
                            "give it at least ~30")
    return out


def windows(docs_ids: Sequence[Sequence[int]], length: int, bos_id: int, eos_id: int
            ) -> list[Example]:
    """The documents' ids, each followed by EOS, packed into one stream and cut into windows
    of `length` - 1 tokens after a BOS (a last partial window is dropped): next-token training
    examples of one length, so training compiles one shape, whose loss covers every token."""
    stream = [i for ids in docs_ids for i in (*ids, eos_id)]
    return [Example((bos_id,), tuple(stream[start:start + length - 1]))
            for start in range(0, len(stream) - length + 2, length - 1)]
