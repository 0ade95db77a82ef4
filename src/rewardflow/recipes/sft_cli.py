"""`rewardflow sft`: supervised fine-tuning on your own rows (prompt/completion or messages), loss on the completion
only, optionally packed; the checkpoint it writes is an RL starting point (`model.path=DIR/sft sft.steps=0`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .run_dir import add_overwrite, owned_run_dir

SFT_HELP = """Fine-tune a model on your own examples; the loss is on the completion tokens only.

--data takes .jsonl, .json, .csv or .parquet rows, or hf:NAME[:CONFIG] (a `datasets` dataset; split data.split),
each row either
  {"prompt": "What is 2 + 3?", "completion": "2 + 3 = 5. Answer: 5"}     (field names: sft.prompt_key / sft.completion_key)
  {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}   (the last turn is learned)
The prompt may also be a list of messages; data.system_prompt and data.template apply to prompts as in RL.

Writes, in --out DIR: DIR/sft (the fine-tuned checkpoint, a transformers directory), DIR/metrics.jsonl (loss per
step), DIR/config.json; DIR/init too when no --model is given (the tiny model built from the config, its tokenizer
learned from your rows); DIR/tensorboard with logging.trackers=[tensorboard].

examples:
  rewardflow sft --data my_sft.jsonl --out runs/my_sft sft.steps=200
  rewardflow sft --data chats.parquet --model smollm2-135m-instruct --out runs/chat_sft sft.steps=50 sft.lr=1e-5 sft.pack=true
  rewardflow train --config configs/grpo_chain_sum.yaml model.path=runs/my_sft/sft sft.steps=0 --out runs/rl_from_my_sft
"""


def _sft(args) -> int:
    from ..progress import progress_bars
    from ..train.metrics import MetricsLog
    from ..train.tracking import with_trackers
    from .config_loader import load_config, to_dict
    from .warmstart import user_sft_examples, warm_start

    overrides = [f"trainer.seed={args.seed}", f"sft.data={args.data}"] + ([f"model.path={args.model}"] if args.model else [])
    cfg = load_config(args.config, overrides + list(args.overrides))  # a bad config fails before --out is touched
    if cfg.sft.steps < 1:
        raise ValueError(f"sft.steps={cfg.sft.steps}: `rewardflow sft` needs at least one step")
    n_rows = len(user_sft_examples(cfg))  # a malformed row fails here, naming its file and line, before any model work
    with owned_run_dir(args) as out:
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
        log = with_trackers(MetricsLog(out / "metrics.jsonl"), cfg.logging.trackers, to_dict(cfg))
        try:
            with progress_bars(not args.quiet) as bar:
                ckpt = warm_start(cfg, out, log=log, bar=bar, device=cfg.model.device)
        finally:
            if hasattr(log, "close"):
                log.close()
        losses = [r["loss/sft"] for r in log.read() if r.get("phase") == "sft" and "loss/sft" in r]
    print(json.dumps({"checkpoint": str(ckpt), "rows": n_rows, "steps": cfg.sft.steps, "first_loss": losses[0] if losses else None,
                      "last_loss": losses[-1] if losses else None, "packed": cfg.sft.pack}, indent=2))
    return 0


def register(sub) -> None:
    """Adds `sft` to the top-level subparsers."""
    p = sub.add_parser("sft", help="Supervised fine-tuning on your own prompt/completion or messages rows.",
                       description=SFT_HELP.replace("%", "%%"), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="SFT rows: .jsonl/.json/.csv/.parquet or hf:NAME[:CONFIG]")
    p.add_argument("--model", default=None, help="a local transformers checkpoint, .gguf file or known model name; "
                   "default: the tiny model of the config, built into --out/init")
    p.add_argument("--config", default=None, help="YAML recipe (see configs/) for model/sft/data settings")
    p.add_argument("--out", default="runs/sft", help="run directory (default: runs/sft)")
    add_overwrite(p)
    p.add_argument("--seed", type=int, default=0, help="seed for the model and the order of rows (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. sft.steps=200 sft.lr=1e-4 sft.pack=true")
    p.set_defaults(func=_sft)
