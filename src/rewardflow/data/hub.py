"""Datasets by name through the `datasets` library: `hf:NAME` or `hf:NAME:CONFIG` (a hub dataset, when a hub is
reachable, or a local dataset folder / script path), one split of it (config `data.split` / `data.eval_split`).

Nothing here downloads unless the user names a hub dataset; offline, `datasets` answers from its cache or fails, and
the failure comes back as one DataError naming the dataset and split.
"""
from __future__ import annotations

from .problem import DataError

HUB_PREFIX = "hf:"


def is_hub_name(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(HUB_PREFIX) and len(spec) > len(HUB_PREFIX)


def parse_hub_name(spec: str) -> tuple[str, str | None]:
    """'hf:openai/gsm8k:main' -> ('openai/gsm8k', 'main'); 'hf:/data/my_ds' -> ('/data/my_ds', None)."""
    body = spec[len(HUB_PREFIX):]
    name, sep, config = body.rpartition(":")
    if not sep or "/" in config or not config:  # no ':CONFIG' (a ':' inside a path is not one)
        return body, None
    return name, config


def hub_task_name(spec: str) -> str:
    """The task label of a hub dataset's problems: its last path part ('hf:openai/gsm8k:main' -> 'gsm8k')."""
    name, _ = parse_hub_name(spec)
    return name.rstrip("/").rsplit("/", 1)[-1] or name


def hub_rows(spec: str, split: str):
    """(row number from 1, row dict) of one split of a `datasets` dataset."""
    try:
        import datasets
    except ImportError:
        raise ImportError(f"{spec}: datasets by name need the `datasets` library: pip install 'rewardflow[data]'") from None
    name, config = parse_hub_name(spec)
    datasets.logging.disable_progress_bar()
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # not found, offline, unknown split: the library's many error types -> one clear error
        text = " ".join(str(e).split())[:300]
        raise DataError(f"{spec} (split {split!r}): the datasets library could not load it: {type(e).__name__}: {text}") from None
    for n, row in enumerate(ds, 1):
        yield n, row
