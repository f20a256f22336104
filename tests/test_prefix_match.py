"""RPT's prefix-match reward on hand-built token bytes (multi-byte UTF-8, byte-fallback pieces,
a right prefix that ends mid-token) and on a real sentencepiece model's pieces."""

import pytest

from jaxrl_reason.rewards.prefix_match import byte_boundaries, prefix_match
from jaxrl_reason.tokenizers import CharTokenizer, SentencePieceTokenizer


def test_a_prefix_earns_the_reward_only_on_a_token_boundary():
    truth = [b"caf", "é".encode(), b" au", b" lait"]  # é is 2 bytes: boundaries 3, 5, 8, 13
    assert byte_boundaries(truth) == [3, 5, 8, 13]
    assert prefix_match("caf", truth) and prefix_match("café", truth)
    assert prefix_match("café au lait", truth)
    assert not prefix_match("ca", truth)  # the right bytes, ending inside the first token
    assert not prefix_match("café a", truth)  # inside " au"
    assert not prefix_match("cafe", truth)  # a different character, same length
    assert not prefix_match("café au lait!", truth)  # past the continuation
    assert not prefix_match("", truth)


def test_byte_fallback_pieces_of_one_character():
    """€ (3 bytes) as three byte-fallback tokens: only the boundary after its last byte is one
    a text prediction can end on."""
    truth = [b"\xe2", b"\x82", b"\xac", b"5"]
    assert byte_boundaries(truth) == [1, 2, 3, 4]
    assert prefix_match("€", truth) and prefix_match("€5", truth)
    assert not prefix_match("€6", truth)


@pytest.fixture(scope="module")
def sentencepiece(tmp_path_factory) -> SentencePieceTokenizer:
    words = ["the", "cat", "sat", "on", "mat", "naïve", "café", "über", "thermal", "theory"]
    texts = [" ".join(words[(i * k) % len(words)] for k in range(1, 8)) for i in range(400)]
    return SentencePieceTokenizer.train(texts, str(tmp_path_factory.mktemp("sp") / "m.model"),
                                        vocab_size=320)


def test_sentencepiece_pieces_give_the_texts_bytes_with_word_boundaries(sentencepiece):
    """The word-boundary marker is the space it stands for, a byte-fallback piece its byte:
    the pieces of running text join to the text's bytes (after the leading space
    sentencepiece adds), and a word that is one piece is a boundary where its first letters
    are not."""
    tok = sentencepiece
    text = "the thermal theory of the cat 😀 naïve"  # the emoji is in no training text
    pieces = tok.token_bytes(tok.encode(text))
    assert b"".join(pieces) == (" " + text).encode()
    assert any(len(p) == 1 and p[0] >= 0x80 for p in pieces)  # byte fallback was used
    rest = tok.token_bytes(tok.encode("the cat sat"))[1:]  # the continuation after "the"
    assert rest[0] == b" cat"
    assert prefix_match(" cat", rest) and prefix_match(" cat sat", rest)
    assert not prefix_match(" ca", rest)
    last = pieces[-1:]  # " naïve", one piece holding a 2-byte character
    assert last == [" naïve".encode()]
    assert prefix_match(" naïve", last) and not prefix_match(" naï", last)


def test_char_tokenizer_bytes():
    tok = CharTokenizer()
    ids = tok.encode("A:12")
    assert tok.token_bytes([tok.bos_id, *ids, tok.eos_id]) == [b"", b"A", b":", b"1", b"2", b""]
