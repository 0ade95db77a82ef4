"""policy/tiny.py: the character/BPE tokenizer, chat template, and the seeded tiny Llama saved and loaded like any checkpoint."""
import random
import string

import pytest
import torch

from rewardflow.policy.tiny import (
    ALPHABET,
    SPECIALS,
    TinyModelConfig,
    build_char_tokenizer,
    build_tiny_model,
    build_tokenizer,
    count_params,
    make_tiny_checkpoint,
)

SMALL = TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def bpe():
    # a corpus where words and multi-digit numbers repeat: merges happen for words, never for digits
    corpus = [f"State the final answer: {a} + {b} = {a + b}\nAnswer: {a + b}" for a in range(100, 160) for b in (123, 4567)]
    return build_tokenizer(corpus, vocab_size=200)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def random_printable(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def test_vocabulary_is_specials_then_printable_characters(tok):
    # 100 printable ASCII characters minus \t \r \x0b \x0c = 96, plus 5 specials
    assert len(ALPHABET) == 96 and "\n" in ALPHABET and " " in ALPHABET
    assert len(tok) == 5 + 96
    assert [tok.convert_tokens_to_ids(s) for s in SPECIALS] == [0, 1, 2, 3, 4]
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.padding_side == "left"


def test_digits_are_single_tokens(tok, bpe):
    for t in (tok, bpe):
        for d in string.digits:
            assert len(ids(t, d)) == 1
        assert t.convert_ids_to_tokens(ids(t, "x = 12345"))[-5:] == list("12345")
        assert len(ids(t, "4567")) == 4  # even though "4567" is frequent in the BPE corpus
    # the BPE tokenizer did learn merges (so the digit rule is what keeps numbers apart)
    assert len(ids(bpe, "State the final answer")) < len("State the final answer")
    assert len(ids(tok, "State the final answer")) == len("State the final answer")


def test_encode_decode_round_trip_of_printable_text(tok, bpe):
    rng = random.Random(0)
    texts = [random_printable(rng, rng.randint(1, 60)) for _ in range(50)]
    texts += ["  leading and trailing  ", "a\n\nb\n", "\n", " ", "Hello , world . It 's n't", "-12 + 3 = -9\nAnswer: -9"]
    for t in (tok, bpe):
        for text in texts:
            assert t.decode(ids(t, text)) == text, repr(text)
    assert len(ids(tok, texts[0])) == len(texts[0])  # character level: one token per character


def test_characters_outside_the_alphabet_become_unk(tok):
    assert ids(tok, "é") == [tok.unk_token_id]


def test_special_tokens_are_single_tokens(tok):
    assert ids(tok, "<|user|>") == [3]
    assert ids(tok, "<|assistant|>") == [4]
    assert ids(tok, "<eos>") == [1]


def test_chat_template(tok):
    user = [{"role": "user", "content": "What is 2+3?"}]
    assert tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True) == "<|user|>What is 2+3?\n<|assistant|>"
    assert tok.apply_chat_template(user, tokenize=False, add_generation_prompt=False) == "<|user|>What is 2+3?\n"
    dialogue = user + [{"role": "assistant", "content": "5"}]
    assert tok.apply_chat_template(dialogue, tokenize=False) == "<|user|>What is 2+3?\n<|assistant|>5<eos>"
    rendered = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    # <|user|> W h a t ␣ i s ␣ 2 + 3 ? \n <|assistant|>: 1 + 12 + 1 + 1 = 15 tokens
    encoded = ids(tok, rendered)
    assert len(encoded) == 15 and encoded[0] == 3 and encoded[-1] == 4


def test_count_params_by_hand(tok):
    model = build_tiny_model(tok, SMALL)
    V, h, m, L = 101, 32, 64, 2
    # embedding (tied with the output head) V*h; per layer q,k,v,o 4*h*h + gate,up,down 3*h*m + 2 RMSNorms 2*h; final norm h
    # 3232 + 2 * (4096 + 6144 + 64) + 32 = 23872
    assert count_params(model) == V * h + L * (4 * h * h + 3 * h * m + 2 * h) + h == 23872


def test_same_seed_same_weights_different_seed_different(tok):
    a = build_tiny_model(tok, SMALL).state_dict()
    b = build_tiny_model(tok, SMALL).state_dict()
    c = build_tiny_model(tok, TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64, seed=1)).state_dict()
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    different = [k for k in a if not torch.equal(a[k], c[k])]
    assert "model.embed_tokens.weight" in different and len(different) >= 1 + 2 * 7  # embedding + 7 matrices per layer


def test_building_a_model_does_not_touch_the_global_rng(tok):
    state = torch.get_rng_state()
    build_tiny_model(tok, SMALL)
    assert torch.equal(torch.get_rng_state(), state)


def test_checkpoint_round_trip_through_auto_classes(tmp_path, tok):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = make_tiny_checkpoint(tmp_path / "ckpt", SMALL)
    loaded_tok = AutoTokenizer.from_pretrained(path)
    loaded = AutoModelForCausalLM.from_pretrained(path).eval()
    reference = build_tiny_model(tok, SMALL).eval()

    text = "<|user|>What is 12 - 7?\n<|assistant|>5"
    assert ids(loaded_tok, text) == ids(tok, text)
    assert loaded_tok.decode(ids(loaded_tok, "a b\nc")) == "a b\nc"
    assert loaded_tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True) == "<|user|>hi\n<|assistant|>"
    assert (loaded_tok.pad_token_id, loaded_tok.eos_token_id, loaded_tok.padding_side) == (0, 1, "left")

    x = torch.tensor([ids(tok, text)])
    with torch.no_grad():
        expected, actual = reference(input_ids=x).logits, loaded(input_ids=x).logits
    assert actual.shape == (1, x.shape[1], 101)
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)
    assert count_params(loaded) == 23872
    assert loaded.config.tie_word_embeddings and loaded.config.eos_token_id == 1 and loaded.config.pad_token_id == 0
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()


def test_checkpoint_with_corpus_saves_the_trained_tokenizer(tmp_path, bpe):
    from transformers import AutoTokenizer

    corpus = ["State the final answer: 1 + 2 = 3"] * 50
    path = make_tiny_checkpoint(tmp_path / "ckpt", SMALL, corpus=corpus)
    loaded = AutoTokenizer.from_pretrained(path)
    assert len(ids(loaded, "State the final answer")) < len("State the final answer")
    assert ids(loaded, "123") == [loaded.convert_tokens_to_ids(d) for d in "123"]
    assert loaded.decode(ids(loaded, "State the final answer: 10 - 20 = -10")) == "State the final answer: 10 - 20 = -10"
