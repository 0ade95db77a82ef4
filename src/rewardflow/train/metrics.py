"""metrics.jsonl: one JSON object per logged step, namespaced keys (`reward/mean`, `loss/policy`, ...)."""
from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsLog:
    def __init__(self, path: Path, *, resume_after: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_after is not None and self.path.exists():
            # A resumed run replays the steps after its checkpoint: drop their old lines.
            kept = [l for l in self.path.read_text().splitlines() if l.strip() and json.loads(l).get("step", -1) <= resume_after]
            self.path.write_text("".join(l + "\n" for l in kept))
        elif resume_after is None:
            self.path.write_text("")

    def log(self, step: int, metrics: dict, phase: str = "rl") -> None:
        row = {"phase": phase, "step": step}
        row.update({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()})
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def read(self) -> list[dict]:
        return [json.loads(l) for l in self.path.read_text().splitlines() if l.strip()]
