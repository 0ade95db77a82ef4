"""`rewardflow config`: every setting with its default and documentation (--list), or the config a recipe and
overrides resolve to (the YAML a run would use), validated."""
from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import fields, is_dataclass

CONFIG_HELP = """Show the settings. Every run takes a YAML recipe (--config, see configs/) and dotted overrides
(section.field=value) on top of the defaults; a named method (algo.name=dapo, gspo, dr_grpo, ...) brings its
paper's settings, which the recipe and overrides can still change.

examples:
  rewardflow config --list                      # every field: default and what it does
  rewardflow config --list algo                 # one section
  rewardflow config --config configs/dapo.yaml trainer.steps=100   # the resolved config, as YAML
"""

_FIELD = re.compile(r"^\s+(\w+):.*?#\s*(.+)$")


def field_docs(cls) -> dict[str, str]:
    """A dataclass's field documentation: the trailing comment of each field line (config.py's convention)."""
    return {m.group(1): m.group(2).strip() for m in map(_FIELD.match, inspect.getsource(cls).splitlines()) if m}


def _lines(obj, prefix: str) -> list[str]:
    """Every field of a config group with its default and documentation, nested groups after their parent's fields."""
    docs, out, groups = field_docs(type(obj)), [], []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            groups.append((f.name, value))
        else:
            out.append(f"  {prefix}{f.name} = {value!r}\n      {docs.get(f.name, '')}")
    for name, value in groups:
        out += [f"{prefix}{name}:  ({docs.get(name, '')})"] + _lines(value, f"{prefix}{name}.")
    return out


def describe(section: str | None = None) -> str:
    from ..config import Config

    cfg, lines = Config(), []
    for sec in fields(Config):
        if section in (None, sec.name):
            lines += [f"{sec.name}:"] + _lines(getattr(cfg, sec.name), f"{sec.name}.")
    if not lines:
        raise ValueError(f"no config section {section!r}; sections: {', '.join(s.name for s in fields(Config))}")
    return "\n".join(lines)


def _config(args) -> int:
    from omegaconf import OmegaConf

    from .config_loader import load_config, to_dict

    if args.list is not False:
        print(describe(args.list))
        return 0
    print(OmegaConf.to_yaml(to_dict(load_config(args.config, list(args.overrides)))), end="")
    return 0


def register(sub) -> None:
    c = sub.add_parser("config", help="List every setting with its documentation, or show a resolved config.",
                       description=CONFIG_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--list", nargs="?", const=None, default=False, metavar="SECTION",
                   help="list every field (or one section's) with its default and documentation")
    c.add_argument("--config", default=None, help="YAML recipe to resolve (default: the quickstart defaults)")
    c.add_argument("overrides", nargs="*", help="dotted overrides, e.g. algo.name=dapo trainer.steps=100")
    c.set_defaults(func=_config)
