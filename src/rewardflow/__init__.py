"""rewardflow: make language models reason better with rewards.

The main names are importable from the package itself, e.g. `from rewardflow import Verifier, load_scorer,
load_config, HFPolicy`. They are resolved lazily on first use, so `import rewardflow` stays light (no torch)."""

import os
from importlib import import_module

__version__ = "0.1.0"

# Reproducible fp32 matrix products on CPU. torch's BLAS on x86 is Intel MKL, whose default kernels round some small
# products differently depending on where the operands happen to sit in memory (a [7, 128] x [128, 512] product
# differs by ~5e-6 across 16-byte offsets on the 2-core AMD EPYC of docs/speed.md). The sampler's row compaction
# can make such shapes in fresh allocations, one of the two sources of two runs of one seed drifting apart (the
# other was a gather's backward in the training pass: policy/hf.py, _select_rows).
# MKL's conditional numerical reproducibility mode "AUTO" keeps the CPU's best code path and drops the alignment
# dependence (tests/test_reproducible.py; not slower, docs/speed.md). MKL reads it at its first call, so this holds when
# rewardflow is imported before any torch arithmetic; a value the user set wins.
os.environ.setdefault("MKL_CBWR", "AUTO")

# public name -> the module (relative to this package) that defines it
_API = {
    "Config": ".config",
    "Problem": ".data",
    "DataError": ".data",
    "GymSource": ".data",
    "load_jsonl": ".data",
    "load_problems": ".data",
    "Verifier": ".verify",
    "score_text": ".verify",
    "Scorer": ".rewards",
    "StepScores": ".rewards",
    "load_scorer": ".rewards",
    "Policy": ".policy",
    "SamplingParams": ".policy",
    "HFPolicy": ".policy.hf",
    "load_config": ".recipes.config_loader",
    "ConfigError": ".recipes.config_loader",
    "run_pipeline": ".recipes.pipeline",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_API[name], __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
