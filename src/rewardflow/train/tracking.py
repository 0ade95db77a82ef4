"""Where a run's numbers and samples go besides metrics.jsonl (config `logging:`).

- `Tracked(log, trackers, run_dir)`: a MetricsLog that also sends every row to TensorBoard (event files in
  RUN/tensorboard) and/or Weights & Biases (offline, files in RUN/wandb, unless WANDB_API_KEY is set). metrics.jsonl
  stays the record: rows are written there first and unchanged. Both libraries are imported only when named.
- `SampleLog`: samples.jsonl next to metrics.jsonl; every `samples_every` RL steps and at every evaluation a few
  completions with their prompt, reward and verdict, so a person can read what the policy writes.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..eval.report import read_samples  # samples.jsonl is read by the report too; eval/ sits below train/

TEXT_CHARS = 2000  # a sample's prompt / completion is cut here: samples.jsonl is for reading, not a dataset


def _scalars(metrics: dict) -> dict[str, float]:
    """The finite numbers of a metrics row (bools and lists left out): what a scalar tracker can plot."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _tag(phase: str, key: str) -> str:
    """RL rows keep their names (reward/mean); other phases get a prefix (sft/loss/sft): steps restart per phase."""
    return key if phase == "rl" else f"{phase}/{key}"


class TensorBoardSink:
    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError("logging.trackers=[tensorboard] needs the tensorboard package: pip install 'rewardflow[track]'") from None
        self.dir = Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.dir))

    def __call__(self, step: int, metrics: dict, phase: str) -> None:
        for k, v in _scalars(metrics).items():
            self.writer.add_scalar(_tag(phase, k), v, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    def __init__(self, run_dir: Path, config: dict | None):
        try:
            import wandb
        except ImportError:
            raise ImportError("logging.trackers=[wandb] needs the wandb package: pip install 'rewardflow[track]' wandb") from None
        # offline unless the user has a key (or chose a mode): a run never blocks on a login prompt or the network
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "rewardflow"), dir=str(run_dir), mode=mode, config=config or {})

    def __call__(self, step: int, metrics: dict, phase: str) -> None:
        # wandb's own step must only grow, and steps restart per phase: the phase's step goes in as a metric instead
        self.run.log({**{_tag(phase, k): v for k, v in _scalars(metrics).items()}, f"{phase}/step": step})

    def close(self) -> None:
        self.run.finish()


class Tracked:
    """A MetricsLog plus tracker sinks; same `log` / `read` / `path` interface, so loops take either."""

    def __init__(self, log, trackers: list[str], run_dir: Path, config: dict | None = None):
        self.inner = log
        sinks = {"tensorboard": lambda: TensorBoardSink(run_dir), "wandb": lambda: WandbSink(run_dir, config)}
        self.sinks = [sinks[name]() for name in trackers]

    @property
    def path(self) -> Path:
        return self.inner.path

    def log(self, step: int, metrics: dict, phase: str = "rl") -> None:
        self.inner.log(step, metrics, phase)
        for sink in self.sinks:
            sink(step, metrics, phase)

    def read(self) -> list[dict]:
        return self.inner.read()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def with_trackers(log, trackers: list[str], config: dict | None = None):
    """`log` with the named trackers added (writing beside its metrics.jsonl); `log` itself when none are named or
    it already has trackers (a recipe that wraps the whole run's log, SFT rows included, passes it on as it is)."""
    if log is None or not trackers or isinstance(log, Tracked):
        return log
    return Tracked(log, list(trackers), Path(log.path).parent, config)


def _cut(text) -> str | None:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "..."


class SampleLog:
    """samples.jsonl: one JSON row per written completion: phase, step, id, prompt, completion, answer, pred,
    reward, correct. `resume_after=N` drops the RL rows after step N (the resumed run writes them again)."""

    def __init__(self, path: Path, *, every: int = 10, per_write: int = 4, resume_after: int | None = None):
        self.path, self.every, self.per_write = Path(path), every, per_write
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_after is not None and self.path.exists():
            kept = [r for r in read_samples(self.path) if r.get("phase") != "rl" or r.get("step", -1) <= resume_after]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, step: int, phase: str, rows: list[dict]) -> None:
        if not rows:  # no file for a run that wrote no samples
            return
        with self.path.open("a") as f:
            for r in rows[: self.per_write]:
                row = {"phase": phase, "step": step, **{k: _cut(v) if isinstance(v, str) else v for k, v in r.items()}}
                f.write(json.dumps(row) + "\n")

    def rl_step(self, step: int, rollout) -> None:
        """Every `every` steps: the first sample of each of the first prompts, with its shaped reward and verdict."""
        if not self.every or step % self.every or not rollout.completions:
            return
        B, G = rollout.rewards.shape
        rows = []
        for b in range(min(B, self.per_write)):
            p, c = rollout.problems[b * G], rollout.completions[b * G]
            correct = None if rollout.correct is None else bool(rollout.correct[b, 0].item())
            rows.append({"id": p.id, "prompt": p.prompt, "completion": c.text, "answer": p.answer, "pred": rollout.answers[b][0],
                         "reward": float(rollout.rewards[b, 0].item()), "correct": correct})
        self.write(step, "rl", rows)
