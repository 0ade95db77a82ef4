"""Tiny models with no download: a character tokenizer and a Llama-architecture causal LM from a config.

Both are saved with `save_pretrained` and loaded back through AutoTokenizer / AutoModelForCausalLM, the
same path any local transformers checkpoint takes (`model.path=...`).
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import torch

PAD, EOS, UNK, USER, ASSISTANT = "<pad>", "<eos>", "<unk>", "<|user|>", "<|assistant|>"
SPECIALS = [PAD, EOS, UNK, USER, ASSISTANT]
# One token per printable ASCII character (so every digit is its own token), plus newline.
ALPHABET = [c for c in string.printable if c not in "\t\r\x0b\x0c"]

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}" + USER + "{{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}" + ASSISTANT + "{{ m['content'] }}" + EOS + "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)


@dataclass
class TinyModelConfig:
    hidden_size: int = 128  # width of the residual stream
    layers: int = 4  # transformer blocks
    heads: int = 4  # attention heads (key/value heads equal: plain multi-head attention)
    intermediate_size: int = 512  # SwiGLU hidden width
    max_positions: int = 512  # longest prompt + completion
    seed: int = 0  # initialisation seed


# Pre-tokens: a word with its leading space, a single digit (so numbers are always spelled digit by
# digit), whitespace, or a symbol with its leading space. BPE merges only happen inside a pre-token.
PRE_TOKEN = r" ?[A-Za-z]+| ?[^A-Za-z\d\s]|\d|\s"


def build_tokenizer(corpus: list[str] | None = None, vocab_size: int = 512):
    """A `tokenizers` BPE tokenizer over printable ASCII, wrapped as a transformers fast tokenizer.

    Without a corpus it is character-level. With one (e.g. task prompts and worked solutions) frequent
    words become single tokens, which shortens prompts about threefold and makes a tiny model cheaper to
    train; digits stay single tokens either way.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PRE_TOKEN), behavior="isolated")
    tok.decoder = decoders.Fuse()  # pieces are raw substrings: concatenation restores the text exactly
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=ALPHABET, show_progress=False)
    tok.train_from_iterator(corpus or [], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_char_tokenizer():
    return build_tokenizer(None)


def build_tiny_model(tokenizer, cfg: TinyModelConfig):
    """A Llama-architecture causal LM initialised from `cfg.seed` (no pretrained weights)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.heads,
        max_position_embeddings=cfg.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        model = AutoModelForCausalLM.from_config(config)
    return model


def make_tiny_checkpoint(path: str | Path, cfg: TinyModelConfig | None = None, corpus: list[str] | None = None) -> Path:
    """Build tokenizer (trained on `corpus` when given) + model and save both to `path`; returns the path."""
    path = Path(path)
    tokenizer = build_tokenizer(corpus)
    model = build_tiny_model(tokenizer, cfg or TinyModelConfig())
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
