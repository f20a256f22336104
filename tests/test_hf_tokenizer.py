"""HF tokenizers behind our interface: ids and special ids as transformers reads them, and chat
templates (written here, shaped like real ones) rendered exactly as transformers'
`apply_chat_template` renders them. Nothing is downloaded: the tokenizer is trained here."""

import json
import os
from pathlib import Path

import pytest

from jaxrl_reason.data.chat import ChatTask
from jaxrl_reason.data.gsm8k import Gsm8kTask
from jaxrl_reason.errors import UserError
from jaxrl_reason.tokenizers import HFTokenizer, SentencePieceTokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # transformers reads local directories only
tokenizers = pytest.importorskip("tokenizers", reason="the hf extra is not installed")
pytest.importorskip("jinja2", reason="the hf extra is not installed")

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>",
           "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<bos>",
           "<start_of_turn>", "<end_of_turn>"]
CORPUS = ["Natalia sold clips to 48 of her friends in April, and then half as many in May.",
          "You are a helpful assistant. Solve the problem step by step.",
          "How many clips did Natalia sell altogether? 48/2 = 24 and 48 + 24 = 72.",
          "Zoë paid 5€ for <b>tea</b> & cake."] * 10

CHATML = """{%- for message in messages %}
    {%- if loop.first and message['role'] != 'system' %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
    {%- if message['role'] == 'tool' %}
        {{- '<|im_start|>tool\\n' + message['content'] | tojson + '<|im_end|>\\n' }}
        {%- continue %}
    {%- endif %}
    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
LLAMA3 = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" + system_message + "<|eot_id|>" }}
{% for message in messages %}
{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
{% endif %}
{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{% endfor %}
{% if add_generation_prompt %}
{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{% endif %}
"""  # noqa: E501
GEMMA = """{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"""  # noqa: E501
CONVERSATIONS = [
    [{"role": "user", "content": "How many clips did Natalia sell?"}],
    [{"role": "system", "content": "  Solve the problem step by step.  "},
     {"role": "user", "content": "48 + 24?"}, {"role": "assistant", "content": "72"},
     {"role": "user", "content": "Zoë paid 5€ for <b>tea</b> & cake. Why?"}],
    [{"role": "user", "content": "Look it up."}, {"role": "tool", "content": "<b>72</b> & \""},
     {"role": "assistant", "content": "It is 72."}],
]
# name: (template, tokenizer_config specials, generation_config, config.json)
CHECKPOINTS = {
    "chatml": (CHATML, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
               {"eos_token_id": [2, 0]}, {"bos_token_id": 0}),
    "llama3": (LLAMA3, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
               {"eos_token_id": [6, 0]}, {}),
    "gemma": (GEMMA, {"bos_token": "<bos>", "eos_token": "<end_of_turn>",
                      "pad_token": "<|endoftext|>"}, {}, {}),
}


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory):
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def make_dir(root, name, tokenizer_json):
    template, specials, generation, config = CHECKPOINTS[name]
    path = root / name
    path.mkdir()
    (path / "tokenizer.json").write_text(tokenizer_json.read_text())
    added = {str(i): {"content": t, "special": True, "lstrip": False, "rstrip": False,
                      "normalized": False, "single_word": False} for i, t in enumerate(SPECIAL)}
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": template,
        "added_tokens_decoder": added, **specials}))
    (path / "generation_config.json").write_text(json.dumps(generation))
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tokenizer_json):
    root = tmp_path_factory.mktemp("ckpts")
    return {name: make_dir(root, name, tokenizer_json) for name in CHECKPOINTS}


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_chat_template_renders_as_transformers_does(checkpoints, name):
    transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")
    theirs = transformers.AutoTokenizer.from_pretrained(checkpoints[name])
    ours = HFTokenizer(str(checkpoints[name]))
    assert ours.vocab_size == len(theirs)
    rendered = 0
    for messages in CONVERSATIONS:
        for add_generation_prompt in (False, True):
            try:
                want = theirs.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)
            except Exception as e:  # the template rejects this conversation: so must ours
                with pytest.raises(type(e), match=str(e)[:30]):
                    ours.apply_chat_template(messages, add_generation_prompt)
                continue
            got = ours.apply_chat_template(messages, add_generation_prompt)
            assert got == want
            assert ours.encode(got) == theirs.encode(got, add_special_tokens=False)
            rendered += 1
    assert rendered >= 2


def test_special_ids_come_from_the_tokenizer_then_generation_config(checkpoints):
    ids = {t: i for i, t in enumerate(SPECIAL)}
    chatml = HFTokenizer(str(checkpoints["chatml"]))  # no BOS token: config.json's bos id
    assert (chatml.bos_id, chatml.eos_id, chatml.pad_id) == (0, ids["<|im_end|>"], 0)
    assert chatml.stop_ids == (ids["<|im_end|>"], ids["<|endoftext|>"])
    llama = HFTokenizer(str(checkpoints["llama3"]))  # no pad token: pads with EOS
    assert (llama.bos_id, llama.eos_id, llama.pad_id) == (3, 6, 6)
    assert llama.stop_ids == (6, 0)
    gemma = HFTokenizer(str(checkpoints["gemma"]))
    assert (gemma.bos_id, gemma.eos_id, gemma.stop_ids) == (7, 9, (9,))


def test_encode_decode_round_trip_and_decode_stops_at_a_stop_id(checkpoints):
    tok = HFTokenizer(str(checkpoints["chatml"]))
    text = "Zoë paid 5€ for <b>tea</b> & cake."
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.encode("<|im_start|>user")[0] == SPECIAL.index("<|im_start|>")
    assert tok.decode([*ids, tok.pad_id, tok.stop_ids[1], *tok.encode("more")]) == text
    assert tok.decode([SPECIAL.index("<|im_start|>"), *ids, tok.eos_id]) == text


def test_sentencepiece_model_with_added_tokens(tmp_path):
    sp = SentencePieceTokenizer.train(CORPUS, str(tmp_path / "tokenizer.model"), vocab_size=400)
    turn = sp.vocab_size  # added tokens sit past sentencepiece's pieces, as in Gemma's
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
        "added_tokens_decoder": {str(turn): {"content": "<start_of_turn>", "special": True}}}))
    tok = HFTokenizer(str(tmp_path))
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (sp.pad_id, sp.bos_id, sp.eos_id)
    assert tok.vocab_size == turn + 1
    ids = tok.encode("Natalia sold<start_of_turn>clips")
    assert ids == [*sp.encode("Natalia sold"), turn, *sp.encode("clips")]
    assert tok.decode(ids) == "Natalia sold clips"  # each piece keeps its "▁" prefix


def test_a_directory_without_a_tokenizer_or_template_says_so(tmp_path, checkpoints):
    with pytest.raises(UserError, match="neither tokenizer.json nor tokenizer.model"):
        HFTokenizer(str(tmp_path))
    tok = HFTokenizer(str(checkpoints["chatml"]))
    tok.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        tok.apply_chat_template(CONVERSATIONS[0])


def test_chat_task_prompts_in_the_chat_format_without_a_second_bos(checkpoints, tmp_path):
    """GSM8K problems through ChatTask: the user turn in the template, the generation prompt
    last, the BOS text dropped (encoding adds the id); per-difficulty sets from the test split."""
    fixture = Path(__file__).resolve().parent / "fixtures/gsm8k"
    gsm8k = Gsm8kTask(manual_dir=str(fixture), data_dir=str(tmp_path),
                      prompt_template="{question}")
    two_lines = gsm8k.problems_of_length(2, 10, 0)
    assert two_lines and all(p.difficulty == 2 for p in two_lines)
    assert len(gsm8k.problems_of_length(2, 1, 0)) == 1
    problem = two_lines[0]
    llama = ChatTask(gsm8k, HFCheckpointStub(checkpoints["llama3"]), system="Be brief.")
    assert llama.prompt(problem) == (
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\n"
        f"<|start_header_id|>user<|end_header_id|>\n\n{problem.question}<|eot_id|>\n"
        "<|start_header_id|>assistant<|end_header_id|>\n\n\n")  # as the template is written
    chatml = ChatTask(gsm8k, HFCheckpointStub(checkpoints["chatml"]))
    assert chatml.prompt(problem, hint="32").endswith(
        f"user\n{problem.question} (The answer is 32.)<|im_end|>\n<|im_start|>assistant\n")
    assert chatml.check(problem, f"... #### {problem.answer}").correct


class HFCheckpointStub:
    """What ChatTask needs of an HFCheckpoint: its tokenizer (these dirs hold no weights)."""

    def __init__(self, path):
        self.path = path

    def tokenizer(self):
        return HFTokenizer(str(self.path))
