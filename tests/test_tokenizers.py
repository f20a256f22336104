"""Tokenizers: exact round trips, reserved ids, loud failures on what cannot be encoded."""

import pytest

from jaxrl_reason.tokenizers import CharTokenizer, SentencePieceTokenizer

CORPUS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many in May.",
    "How many clips did Natalia sell altogether in April and May? 48/2 = <<48/2=24>>24",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting.",
    "624+259,C0\n62+25,3C1\n6+2,83C0\n,883C0\nA:883\n",
] * 20


def test_char_round_trip_and_reserved_ids():
    tok = CharTokenizer()
    text = "12+345,C0\nA: 357 (x*y)/z!"
    ids = tok.encode(text)
    assert min(ids) >= 3 and len(ids) == len(text)
    assert tok.decode(ids) == text
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.vocab_size == len(tok.alphabet) + 3 and max(ids) < tok.vocab_size


def test_char_decode_stops_at_eos_and_drops_pad_and_bos():
    tok = CharTokenizer("0123456789+\n")
    ids = [tok.bos_id, *tok.encode("12+3"), tok.pad_id, tok.eos_id, *tok.encode("99")]
    assert tok.decode(ids) == "12+3"


def test_char_unknown_character_names_it():
    with pytest.raises(ValueError, match="'é'"):
        CharTokenizer().encode("café")
    with pytest.raises(ValueError, match="'x'"):
        CharTokenizer("0123456789").encode("1x")
    with pytest.raises(ValueError, match="repeated"):
        CharTokenizer("aa")


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sp") / "tok.model")
    return path, SentencePieceTokenizer.train(CORPUS, path, vocab_size=400)


def test_sentencepiece_train_load_round_trip(sp_model):
    path, trained = sp_model
    loaded = SentencePieceTokenizer(path)
    assert (loaded.pad_id, loaded.bos_id, loaded.eos_id) == (0, 1, 2)
    assert loaded.vocab_size == trained.vocab_size >= 300  # 256 byte pieces + specials + merges
    text = "Natalia sold 48 clips in April; 624+259=883."
    assert loaded.encode(text) == trained.encode(text)
    assert loaded.decode(loaded.encode(text)) == text
    assert len(loaded.encode("Natalia sold clips")) < len("Natalia sold clips") / 2  # merges


def test_sentencepiece_byte_fallback_round_trips_unseen_characters(sp_model):
    _, tok = sp_model
    text = "Zoë paid 5€ for 東京 tea 🙂"
    ids = tok.encode(text)
    assert 3 not in ids  # the unk id: byte fallback leaves nothing unknown
    assert tok.decode(ids) == text


def test_sentencepiece_decode_stops_at_eos_and_drops_pad(sp_model):
    _, tok = sp_model
    ids = [*tok.encode("half as many"), tok.pad_id, tok.eos_id, *tok.encode("in May")]
    assert tok.decode(ids) == "half as many"


def test_sentencepiece_missing_model_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="train"):
        SentencePieceTokenizer(str(tmp_path / "absent.model"))
