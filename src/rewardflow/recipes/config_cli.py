"""`rewardflow config`: every setting with its default and documentation (--list), or the config a recipe and
overrides resolve to (the YAML a run would use), validated."""
from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import fields

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


def describe(section: str | None = None) -> str:
    from ..config import Config

    lines = []
    for sec in fields(Config):
        if section not in (None, sec.name):
            continue
        cls = sec.default_factory().__class__
        docs, default = field_docs(cls), sec.default_factory()
        lines.append(f"{sec.name}:")
        for f in fields(cls):
            lines.append(f"  {sec.name}.{f.name} = {getattr(default, f.name)!r}\n      {docs.get(f.name, '')}")
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
