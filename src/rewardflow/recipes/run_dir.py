"""Output directories of the verbs that write one. A run never writes into a directory that holds something else:
an earlier run is continued only with --resume and replaced only with --overwrite (the old copy is kept, moved
aside, until the new run succeeds); a directory is locked while a run owns it, so two runs cannot interleave."""
from __future__ import annotations

import argparse
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..atomic import LOCK, MARKER, OutDirError, claim_out_dir


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace what --out holds; the old copy is kept aside until this run succeeds")


def add_recipe_args(p: argparse.ArgumentParser, name: str, model_help: str, example: str) -> None:
    """The arguments every recipe verb run from configs/NAME.yaml into runs/NAME shares."""
    p.add_argument("--config", default=f"configs/{name}.yaml", help=f"YAML recipe (default: configs/{name}.yaml)")
    p.add_argument("--out", default=f"runs/{name}", help=f"run directory (default: runs/{name})")
    p.add_argument("--model", default=None, help=model_help)
    add_overwrite(p)
    p.add_argument("--seed", type=int, default=0, help="seed for the model, data and sampling (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help=f"dotted config overrides, e.g. {example}")


def holds_something(out: Path) -> bool:
    """Anything beyond our marker and lock file: an earlier run, or the user's own files."""
    return out.exists() and (not out.is_dir() or any(p.name not in (MARKER, LOCK) for p in out.iterdir()))


def refuse_used(out: Path, *, resume: bool, overwrite: bool) -> None:
    if holds_something(out) and not (resume or overwrite):
        raise OutDirError(f"--out {out} already holds files (an earlier run?); pass --resume to continue that run or "
                          "--overwrite to replace it, or choose another --out")


@contextmanager
def owned_run_dir(args) -> Iterator[Path]:
    """args.out for this run: checked, marked, locked for the run's lifetime. Under torchrun only rank 0 (which
    writes every file) claims it."""
    out, resume, overwrite = Path(args.out), getattr(args, "resume", False), args.overwrite
    if int(os.environ.get("RANK", "0")) > 0:
        yield out
        return
    refuse_used(out, resume=resume, overwrite=overwrite)
    with claim_out_dir(out, overwrite=overwrite, resume=resume):
        yield out


def positive_int(text: str) -> int:
    """argparse type for counts (--n, --limit, ...): a clear usage error instead of a crash deep in the run."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value
