"""metrics.jsonl: one JSON object per logged step, namespaced keys (`reward/mean`, `loss/policy`, ...).

Every row carries its `phase` ("sft", "rl", "preference", ...): step numbers restart in each phase, so a resume
drops only the rows of the phase it replays.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path


class MetricsLog:
    def __init__(self, path: Path, *, resume_after: int | None = None, resume_phase: str = "rl"):
        """A fresh log, or (resume_after=N) the existing one with the `resume_phase` rows after step N dropped: the
        resumed run logs those steps again. Rows of other phases (the SFT warm-start) are kept. A resume with no
        checkpoint yet passes resume_after=-1 (drops all of that phase's rows, as it starts over)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_after is not None and self.path.exists():
            kept = [r for r in read_rows(self.path) if _phase(r) != resume_phase or r.get("step", -1) <= resume_after]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif resume_after is None:
            self.path.write_text("")

    def log(self, step: int, metrics: dict, phase: str = "rl") -> None:
        row = {"phase": phase, "step": step}
        row.update({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()})
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def read(self) -> list[dict]:
        return read_rows(self.path)


def _phase(row: dict) -> str:
    """A row's phase; logs from before rows were tagged: SFT rows are the ones with `sft` keys (`loss/sft`)."""
    if "phase" in row:
        return row["phase"]
    return "sft" if any(k.startswith("sft/") or k.endswith("/sft") for k in row) else "rl"


def read_rows(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl. A last line cut short (the process died mid-write) is dropped with a warning;
    any other line that is not a JSON object is an error naming the file and line."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").split("\n")
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            if i == len(lines):  # no newline after it: the write never finished
                warnings.warn(f"{path}:{i}: dropping a truncated last line ({e})", RuntimeWarning, stacklevel=3)
                continue
            raise ValueError(f"{path}:{i}: not a JSON line: {e}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{i}: not a JSON object")
        rows.append(row)
    return rows
