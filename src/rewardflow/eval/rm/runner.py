"""`rewardflow rm eval --bench NAME`: one entry point, one registry of benchmark runners."""
from __future__ import annotations

import os
from pathlib import Path

from ...rewards.base import Scorer
from .prmbench import run_prmbench
from .probes import run_probes
from .processbench import run_processbench
from .rewardbench import run_rewardbench
from .rewardmath import run_rewardmath
from .selection import run_selection

# Every runner: (out, *, data_root, scores, scorer, threshold, critic) -> results dict, writing DIR/results.*.
BENCHES = {
    "processbench": run_processbench,
    "rewardbench": run_rewardbench,
    "rewardmath": run_rewardmath,
    "prmbench": run_prmbench,
    "selection": run_selection,
    "probes": run_probes,
}
THRESHOLD_BENCHES = ("processbench", "prmbench")  # the benchmarks that turn step scores into labels
LIMIT_BENCHES = ("processbench", "probes")  # the benchmarks that run a model over items, where a cap saves time


def default_data_root() -> Path:
    """$REWARDFLOW_DATA, else ../shared/data relative to the working directory (the repository root)."""
    return Path(os.environ.get("REWARDFLOW_DATA") or Path("..") / "shared" / "data")


def run_rm_eval(bench: str, out: Path, *, scores: Path | None = None, scorer: Scorer | None = None,
                data_root: Path | None = None, threshold: float | None = None, critic=None, limit: int | None = None) -> dict:
    """Evaluate a reward model (a scores file, a Scorer, a generative critic for ProcessBench, or the
    scores stored with the data) on one benchmark; writes out/results.json, out/results.md and plots."""
    if bench not in BENCHES:
        raise ValueError(f"unknown benchmark {bench!r}; valid: {', '.join(BENCHES)}")
    if threshold is not None and bench not in THRESHOLD_BENCHES:
        raise ValueError(f"a threshold applies to {' and '.join(THRESHOLD_BENCHES)} only, not {bench!r}")
    if critic is not None and bench != "processbench":
        raise ValueError(f"a generative critic is evaluated on processbench only, not {bench!r}")
    if limit is not None and bench not in LIMIT_BENCHES:
        raise ValueError(f"a limit applies to {' and '.join(LIMIT_BENCHES)} only, not {bench!r}")
    extra = {"limit": limit} if limit is not None else {}
    root = Path(data_root) if data_root is not None else default_data_root()
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark data not found at {root.resolve()} (set REWARDFLOW_DATA or pass data_root)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return BENCHES[bench](out, data_root=root, scores=Path(scores) if scores is not None else None,
                          scorer=scorer, threshold=threshold, critic=critic, **extra)
