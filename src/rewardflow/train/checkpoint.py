"""Checkpoints: weights loadable by transformers + optimizer + scheduler + RNG + step + config. A LoRA policy's
checkpoint holds the merged model (plain `AutoModelForCausalLM.from_pretrained` loads it) and the adapter alone in
`adapter/`, which is what a resumed run loads back (policy/lora.py).

Written to a temporary directory and renamed into place, so a crash never leaves a half checkpoint;
`latest` is replaced atomically after the rename. A manifest (checkpoint.json: every file and its size) is
written last, so a directory that lost or truncated a file is recognised and skipped on resume.

trainer_state.pt holds only tensors and plain containers and is read with torch.load(weights_only=True): a
crafted checkpoint cannot run code on `--resume`. RNG states that are not tensors (python's `random`, numpy's)
are stored as lists of ints.
"""
from __future__ import annotations

import json
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path, clean_stale, write_text
from ..policy.lora import save_policy

MANIFEST = "checkpoint.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def _rng_state() -> dict:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(run_dir: Path, step: int, policy, optimizer, scheduler, config: dict, extra: dict | None = None) -> Path:
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    clean_stale(ckpt_root)  # temporaries of runs that died mid-save
    final = ckpt_root / f"step_{step:06d}"
    with atomic_path(final) as tmp:  # re-saving the same step (e.g. after a resume) replaces it whole
        save_policy(policy, tmp)  # loadable by plain transformers; a LoRA policy merged, with its adapter in adapter/
        torch.save(
            {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state(), "extra": extra or {}},
            tmp / "trainer_state.pt",
        )
        (tmp / "run_config.json").write_text(json.dumps(config, indent=2))
        _write_manifest(tmp, step)
    write_text(ckpt_root / "latest", final.name)
    return final


def _write_manifest(ckpt: Path, step: int) -> None:
    files = {str(p.relative_to(ckpt)): p.stat().st_size for p in sorted(ckpt.rglob("*")) if p.is_file()}
    (ckpt / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=1))


def is_intact(ckpt: Path) -> bool:
    """Every file the manifest lists is there with its size (checkpoints from before manifests: trainer_state.pt
    is there)."""
    ckpt = Path(ckpt)
    if not (ckpt / "trainer_state.pt").is_file():
        return False
    if not (ckpt / MANIFEST).exists():
        return True
    try:
        files = json.loads((ckpt / MANIFEST).read_text())["files"]
        return all((ckpt / name).is_file() and (ckpt / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint `latest` names if it is intact, else the newest intact one (with a warning), else None."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return None
    clean_stale(root)
    pointer = root / "latest"
    name = pointer.read_text().strip() if pointer.is_file() else ""
    named = root / name if _STEP_DIR.match(name) else None  # a bare step_N name: never a path out of root
    if named is not None and is_intact(named):
        return named
    steps = sorted((int(m[1]), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir())
    for _, ckpt in reversed(steps):
        if is_intact(ckpt):
            if pointer.is_file():
                warnings.warn(f"{pointer} names {name!r}, which is missing or incomplete; resuming from {ckpt.name}",
                              RuntimeWarning, stacklevel=2)
            return ckpt
    return None


def load_trainer_state(ckpt: Path, optimizer, scheduler) -> dict:
    """Restore optimizer, scheduler and RNG from `ckpt` (weights are loaded with the policy); returns
    {"step", "extra"}."""
    path = Path(ckpt) / "trainer_state.pt"
    try:
        # weights_only: tensors and plain containers only; unpickling anything else (code) is refused
        state = torch.load(path, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a loadable trainer state (only tensors and plain data are read; a checkpoint "
                         f"from an older rewardflow that pickled objects cannot be resumed): {type(e).__name__}") from e
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return {"step": state["step"], "extra": state["extra"]}
