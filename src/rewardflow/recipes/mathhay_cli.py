"""`rewardflow mathhay build`: write MathHay rows (long-context math reasoning, Wang et al. 2024) as JSONL that
`rewardflow eval --data` reads, with accuracy reported per task type, context length and placement."""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from .run_dir import positive_int

BUILD_HELP = """Build a MathHay benchmark: synthetic reports (companies, towns, sports clubs, farms) carrying numerical
facts, questions of four types whose answers code computes (sssd: single-step single-document, mssd: multi-step
single-document, ssmd: single-step multi-document, msmd: multi-step multi-document), every answer re-derived from
the final context text, and a haystack of irrelevant reports padding each context to the requested token length with
the relevant reports placed first, in the middle or last. The same questions appear at every length.

Writes DIR/mathhay.jsonl (every row), DIR/mathhay_<length>.jsonl (one file per length) and DIR/manifest.json. A row
has question (context + question: what the model reads), answer, task_type, length, context_tokens, placement,
context, query and more.

examples:
  rewardflow mathhay build --out runs/mathhay --lengths 2k,8k --per-type 25 --seed 0
  rewardflow mathhay build --out runs/mathhay_smol --lengths 0,1k,2k --per-type 10 --tokenizer smollm2-135m-instruct
  rewardflow eval --model smollm2-135m-instruct --data runs/mathhay_smol/mathhay.jsonl --n 1 --temperature 0 --out runs/mh_eval
"""


def _counter(tokenizer: str | None):
    """Token counter: the named model's tokenizer (a directory, a .gguf, smollm2-135m-instruct), else the documented
    approximation (digits + other characters / 4)."""
    from ..data.mathhay import approx_tokens

    if not tokenizer:
        return approx_tokens, "approx: digits + ceil(other characters / 4)"
    from transformers import AutoTokenizer

    from ..policy.resolve import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model(tokenizer))
    return (lambda text: len(tok(text, add_special_tokens=False)["input_ids"])), f"tokenizer: {tokenizer}"


def _choices(text: str, allowed, what: str) -> list[str]:
    items = [x.strip().lower() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        raise ValueError(f"--{what}: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(allowed)}")
    return items


def _build(args) -> int:
    from ..data.mathhay import PLACEMENTS, TASK_TYPES, build_rows, length_label, load_corpus, parse_length
    from ..data.mathhay.build import corpus_haystack, doc_haystack
    from ..progress import progress_bars

    lengths = [parse_length(x) for x in args.lengths.split(",") if x.strip()]
    types = _choices(args.types, TASK_TYPES, "types")
    placements = _choices(args.placements, PLACEMENTS, "placements")
    haystack = corpus_haystack(load_corpus(args.corpus)) if args.corpus else doc_haystack
    count, counting = _counter(args.tokenizer)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_length: dict[int, list[dict]] = {n: [] for n in lengths}
    rejected = Counter()
    with progress_bars(not args.quiet) as bar:
        for row, n_rejected in build_rows(lengths=lengths, per_type=args.per_type, seed=args.seed, count=count, types=types,
                                          placements=placements, haystack=haystack,
                                          progress=bar("mathhay build", len(lengths) * len(types) * args.per_type)):
            per_length[row["length"]].append(row)
            rejected[row["task_type"]] += n_rejected
    for n, rows in per_length.items():
        _write(out / f"mathhay_{length_label(n)}.jsonl", rows)
    _write(out / "mathhay.jsonl", [r for n in lengths for r in per_length[n]])
    manifest = {"seed": args.seed, "lengths": lengths, "per_type": args.per_type, "types": types, "placements": placements,
                "token_count": counting, "haystack": f"corpus: {args.corpus}" if args.corpus else "synthetic reports",
                "rows": sum(len(r) for r in per_length.values()), "qc_rejected_drafts": dict(rejected),
                "context_tokens": {length_label(n): _span(rows) for n, rows in per_length.items()}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    print(json.dumps(manifest, indent=2))
    return 0


def _span(rows: list[dict]) -> dict:
    tokens = [r["context_tokens"] for r in rows]
    return {"min": min(tokens), "mean": round(sum(tokens) / len(tokens), 1), "max": max(tokens)} if tokens else {}


def _write(path: Path, rows: list[dict]) -> None:
    from ..atomic import write_text

    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def register(sub) -> None:
    m = sub.add_parser("mathhay", help="MathHay: long-context math reasoning benchmark (build the rows).")
    m_sub = m.add_subparsers(dest="mathhay_verb", required=True)
    b = m_sub.add_parser("build", help="Write MathHay rows: four task types, contexts padded to each length.",
                         description=BUILD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--out", required=True, help="directory for mathhay.jsonl, mathhay_<length>.jsonl and manifest.json")
    b.add_argument("--lengths", default="2k,8k", help="context lengths in tokens, comma-separated: 512, 2k, 128k; 0 = the "
                   "relevant documents alone (default: 2k,8k)")
    b.add_argument("--per-type", type=positive_int, default=10, help="questions per task type at each length (default 10)")
    b.add_argument("--seed", type=int, default=0, help="the rows are a function of the seed (default 0)")
    b.add_argument("--types", default="sssd,mssd,ssmd,msmd", help="task types to build (default: all four)")
    b.add_argument("--placements", default="first,middle,last", help="where the relevant documents go; row i of a type "
                   "takes the (i mod count)-th (default: first,middle,last)")
    b.add_argument("--tokenizer", default=None, help="count tokens with this model's tokenizer (a directory, a .gguf or "
                   "smollm2-135m-instruct); default: an approximation, digits + other characters / 4")
    b.add_argument("--corpus", default=None, help="a UTF-8 text file whose paragraphs pad the contexts instead of our "
                   "synthetic reports (the facts still come from our reports)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)
