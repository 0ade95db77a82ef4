"""rewardflow: make language models reason better with rewards.

The main names are importable from the package itself, e.g. `from rewardflow import Verifier, load_scorer,
load_config, HFPolicy`. They are resolved lazily on first use, so `import rewardflow` stays light (no torch)."""

from importlib import import_module

__version__ = "0.1.0"

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
