"""The one warm-start recipe: where training problems come from, the tiny model built from the config (its
tokenizer learned from training prompts and worked solutions, never eval data), and supervised fine-tuning on
worked solutions. The quickstart, `train`, and every benchmark that needs a warm-started policy call `warm_start`.

SFT reads the training stream from SFT_OFFSET on and RL from 0, so no training problem is used twice.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch

from ..atomic import write_text
from ..config import Config
from ..data import GymSource, worked_solution
from ..data.jsonl import ListSource
from .config_loader import ConfigError, to_dict

SFT_OFFSET = 5_000_000
CORPUS_PROBLEMS = 2000  # training problems whose prompts (and worked solutions) the tiny tokenizer learns from


def make_source(cfg: Config):
    """The problems of `data:`: a reasoning-gym task (seeded, disjoint train/eval splits), problem files
    (.jsonl/.json/.csv/.parquet, fields named by data.prompt_key / data.answer_key or detected), `datasets` names
    (hf:NAME, split data.split / data.eval_split), or a weighted mix of sources (data.mix); prompts then go through
    data.template and data.system_prompt."""
    from ..data import is_data_file, load_problems
    from ..data.chat import FormattedSource, PromptFormat

    d = cfg.data
    keys = {"prompt_key": d.prompt_key, "answer_key": d.answer_key}
    if d.mix:
        source = _mix_source(cfg)
    elif is_data_file(d.task):  # validate() requires data.eval_path with it
        source = ListSource(load_problems(d.task, split=d.split, **keys), load_problems(d.eval_path, limit=d.eval_size, split=d.eval_split, **keys))
    else:
        source = GymSource(d.task, seed=cfg.trainer.seed, eval_size=d.eval_size, **d.task_kwargs)
        if d.eval_path:
            source.eval_problems = load_problems(d.eval_path, limit=d.eval_size, split=d.eval_split, **keys)
    fmt = PromptFormat(d.template, d.system_prompt)
    return FormattedSource(source, fmt) if fmt.active else source


def _mix_source(cfg: Config):
    """data.mix: each source a file / hf:NAME (its rows) or a reasoning-gym task (its training stream, with
    data.task_kwargs only for data.task itself); eval from data.eval_path, else data.task's eval split."""
    from ..data import is_data_file, load_problems
    from ..data.mix import MixSource

    d = cfg.data
    keys = {"prompt_key": d.prompt_key, "answer_key": d.answer_key}
    sources = [load_problems(m, split=d.split, **keys) if is_data_file(m)
               else GymSource(m, seed=cfg.trainer.seed, eval_size=d.eval_size, **(d.task_kwargs if m == d.task else {}))
               for m in d.mix]
    if d.eval_path:
        eval_problems = load_problems(d.eval_path, limit=d.eval_size, split=d.eval_split, **keys)
    else:
        eval_problems = GymSource(d.task, seed=cfg.trainer.seed, eval_size=d.eval_size, **d.task_kwargs).eval_problems
    return MixSource(sources, list(d.mix_weights), eval_problems, seed=cfg.trainer.seed, names=list(d.mix))


def problems_from_args(data: str, task_kwargs: str | None, *, n: int | None, seed: int, split: str = "eval",
                       offset: int = 0, eval_size: int = 200) -> list:
    """The problems a verb's --data names: a data file's rows (.jsonl/.json/.csv/.parquet, from `offset`, at most n),
    or a reasoning-gym task (task_kwargs as JSON): its held-out split, or (split="train") its training stream."""
    import json as _json

    from ..data import is_data_file, load_problems

    if is_data_file(data):  # a `datasets` name (hf:NAME) reads its test split for eval, its train split for training
        return load_problems(data, limit=None if n is None else offset + n, split="train" if split == "train" else "test")[offset:]
    try:
        kwargs = _json.loads(task_kwargs) if task_kwargs else {}
    except _json.JSONDecodeError as e:
        raise ConfigError(f"--task-kwargs is not valid JSON: {e}") from e
    if split == "train":
        return GymSource(data, seed=seed, eval_size=eval_size, **kwargs).train_problems(range(offset, offset + (n or 0)))
    return GymSource(data, seed=seed, eval_size=n or eval_size, **kwargs).eval_problems


def is_direct(index: int, frac: float) -> bool:
    """Deterministic, evenly spread choice of `frac` of the indices (golden-ratio sequence)."""
    return (index * 0.6180339887498949) % 1.0 < frac


def user_sft_examples(cfg: Config) -> list[tuple[str, str]]:
    """The (prompt, completion) rows of sft.data, prompts through data.template / data.system_prompt like RL's."""
    from ..data.chat import PromptFormat
    from ..data.sft import load_sft_examples

    s, fmt = cfg.sft, PromptFormat(cfg.data.template, cfg.data.system_prompt)
    rows = load_sft_examples(s.data, prompt_key=s.prompt_key, completion_key=s.completion_key, split=cfg.data.split)
    return [(fmt.apply(p), c) for p, c in rows] if fmt.active else rows


def sft_examples(source, cfg: Config) -> Callable[[int], list[tuple[str, str]]]:
    """Step -> (prompt, completion) pairs: sft.data's rows when set (data/sft.py), else worked solutions of the
    training problems. A share (sft.direct_frac) of worked solutions answers directly, without working: the
    warm-started policy then mixes both habits, and RL has to discover from reward alone that working pays."""
    s = cfg.sft
    if s.data:
        from ..data.sft import SFTStream

        return SFTStream(user_sft_examples(cfg), s.batch_size, seed=cfg.trainer.seed)

    def examples(step: int) -> list[tuple[str, str]]:
        first = SFT_OFFSET + step * s.batch_size
        batch = source.train_problems(range(first, first + s.batch_size))
        return [(p.prompt, worked_solution(p, direct=is_direct(first + i, s.direct_frac))) for i, p in enumerate(batch)]

    return examples


def build_tiny(cfg: Config, source, path: Path) -> Path:
    """The tiny Llama of `model:` with a BPE tokenizer learned from training prompts and worked solutions."""
    from ..policy.tiny import TinyModelConfig, make_tiny_checkpoint

    m = cfg.model
    sample = source.train_problems(range(SFT_OFFSET - CORPUS_PROBLEMS, SFT_OFFSET))
    if cfg.sft.data:  # the user's SFT rows teach the tokenizer what it will read and write, beside the RL prompts
        rows = user_sft_examples(cfg)[:CORPUS_PROBLEMS]
        corpus = [p.prompt for p in sample] + [p for p, _ in rows] + [c for _, c in rows]
    else:
        corpus = [p.prompt for p in sample] + ([worked_solution(p) for p in sample] if cfg.sft.steps > 0 else [])
    tiny = TinyModelConfig(m.hidden_size, m.layers, m.heads, m.intermediate_size, m.max_positions, cfg.trainer.seed)
    return make_tiny_checkpoint(path, tiny, corpus)


def stamp(cfg: Config) -> str:
    """What a warm-started checkpoint depends on: a cached one is reused only under the same settings."""
    d = to_dict(cfg)
    step = {"max_grad_norm": cfg.trainer.max_grad_norm, "micro_batch_size": cfg.trainer.micro_batch_size}
    return json.dumps({"model": d["model"], "sft": d["sft"], "data": d["data"], "seed": cfg.trainer.seed, "step": step}, sort_keys=True)


def check_worked_solutions(source, cfg: Config) -> None:
    if cfg.sft.data:  # the user's own SFT rows: nothing to generate
        return
    try:
        worked_solution(source.train_problems([SFT_OFFSET])[0])
    except (ValueError, KeyError) as e:
        raise ConfigError(f"sft.steps={cfg.sft.steps}: warm-start needs worked solutions, which exist for arithmetic chains "
                          f"(chain_sum), not for data.task={cfg.data.task!r}; give your own SFT rows (sft.data=FILE), or set "
                          "sft.steps=0 and start from model.path") from e


def _packed(cfg: Config):
    """sft.pack: train/packing.py's backward, rows up to model.max_positions tokens."""
    from ..train.packing import packed_backward

    return lambda policy, pairs, micro_batch_size: packed_backward(policy, pairs, micro_batch_size, cfg.model.max_positions)


def warm_start(cfg: Config, out: Path, *, source=None, log=None, bar=None, device: str = "cpu") -> Path:
    """model.path, or the tiny model built into out/init, fine-tuned on worked solutions into out/sft.

    Cached: out/sft/DONE holds the settings' stamp; the same settings return it at once, other settings are an
    error (delete the directory or use another). With sft.steps=0 the starting checkpoint itself is returned."""
    from transformers.utils import logging as hf_logging

    from ..policy.hf import HFPolicy
    from ..train.sft import run_sft

    hf_logging.disable_progress_bar()  # save_pretrained's shard bar would interleave with ours
    out = Path(out)
    source = source if source is not None else make_source(cfg)
    sft_dir, want = out / "sft", stamp(cfg)
    if (sft_dir / "DONE").exists():
        have = (sft_dir / "DONE").read_text()
        if have and have != want:  # an empty DONE comes from before stamps were written
            raise ConfigError(f"{sft_dir} was warm-started with other model/sft/data settings; use another --out or delete it")
        return sft_dir
    torch.manual_seed(cfg.trainer.seed)
    init = Path(cfg.model.path) if cfg.model.path else build_tiny(cfg, source, out / "init")
    if cfg.sft.steps <= 0:
        return init
    check_worked_solutions(source, cfg)
    policy = HFPolicy.from_pretrained(init, device=device, dtype=getattr(torch, cfg.model.dtype))
    s = cfg.sft
    run_sft(policy, sft_examples(source, cfg), steps=s.steps, lr=s.lr, warmup_steps=s.warmup_steps, weight_decay=s.weight_decay,
            max_grad_norm=cfg.trainer.max_grad_norm, micro_batch_size=cfg.trainer.micro_batch_size, log=log,
            progress=bar("SFT warm-start", s.steps) if bar else None, backward=_packed(cfg) if s.pack else None)
    policy.model.save_pretrained(sft_dir)
    policy.tokenizer.save_pretrained(sft_dir)
    write_text(sft_dir / "DONE", want)
    return sft_dir
