"""Every online RL algorithm on the quickstart task from one SFT checkpoint, same budget; writes
DIR/algos.json, DIR/algos.png and DIR/algos.md. Same as `rewardflow bench algos` (see its --help).

    python bench/algos.py --out runs/bench_algos      # 17 algorithms x 3 seeds x 140 steps: about 50 min on 2 cores
"""
from __future__ import annotations

import argparse
import sys

from rewardflow.train.cli import register_bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/algos.py")
    register_bench(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["algos", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
