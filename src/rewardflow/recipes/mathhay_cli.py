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


def _report(args) -> int:
    """Merge eval results (one per model and length) into a table per model, task type and length, and a plot."""
    curves: dict[str, dict[str, dict[int, dict]]] = {}  # model -> task type -> length -> {greedy, greedy_ci, n}
    for spec in args.results:
        model, _, path = spec.rpartition("=")
        res = json.loads(Path(path).read_text())
        if "by_task_type_x_length" not in res:
            raise ValueError(f"{path}: no per-task-type results; evaluate MathHay rows with this version of `rewardflow eval`")
        for key, group in res["by_task_type_x_length"].items():
            task_type, length = key.split("@")
            points = curves.setdefault(model or Path(path).parent.name, {}).setdefault(task_type, {})
            if int(length) in points:
                raise ValueError(f"{path}: {model} {task_type} at length {length} is already in an earlier results file")
            points[int(length)] = group
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = ["| model | task type | " + " | ".join(_lengths_header(curves)) + " |",
             "|---|---|" + "---|" * len(_lengths_header(curves))]
    for model, types in curves.items():
        types["all"] = _pooled(types)
        for task_type, points in sorted(types.items(), key=lambda kv: _TYPE_ORDER.index(kv[0]) if kv[0] in _TYPE_ORDER else 99):
            cells = [_cell(points.get(n)) for n in _all_lengths(curves)]
            table.append(f"| {model} | {task_type} | " + " | ".join(cells) + " |")
    (out / "mathhay_table.md").write_text("\n".join(table) + "\n")
    _plot(curves, out / "mathhay_accuracy.png")
    print("\n".join(table))
    return 0


_TYPE_ORDER = ["sssd", "mssd", "ssmd", "msmd", "all"]


def _pooled(types: dict) -> dict:
    """length -> greedy accuracy over every task type's rows (successes and counts summed), with its Wilson interval."""
    from ..eval.metrics import wilson_ci

    pooled = {}
    for n in sorted({n for points in types.values() for n in points}):
        groups = [points[n] for points in types.values() if n in points]
        correct, total = sum(round(g["greedy"] * g["n"]) for g in groups), sum(g["n"] for g in groups)
        acc, lo, hi = wilson_ci(correct, total)
        pooled[n] = {"greedy": acc, "greedy_ci": [lo, hi], "n": total}
    return pooled


def _all_lengths(curves) -> list[int]:
    return sorted({n for types in curves.values() for points in types.values() for n in points})


def _lengths_header(curves) -> list[str]:
    return [f"{n} tokens" if n else "relevant docs only" for n in _all_lengths(curves)]


def _cell(group: dict | None) -> str:
    """'0.33 [0.06, 0.79] (n=3)': greedy accuracy, its 95% Wilson interval, the row count."""
    if not group:
        return "-"
    lo, hi = group["greedy_ci"]
    return f"{group['greedy']:.2f} [{lo:.2f}, {hi:.2f}] (n={group['n']})"


def _plot(curves, path: Path) -> None:
    """Greedy accuracy against context length, one panel per model, one line per task type, 95% intervals as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    span = max(_all_lengths(curves)) or 1
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False, sharex=True, sharey=True)
    for ax, (model, types) in zip(axes[0], curves.items()):
        for i, task_type in enumerate(t for t in dict.fromkeys(_TYPE_ORDER + sorted(types)) if t in types):
            points = types[task_type]
            xs = sorted(points)
            ys = [points[n]["greedy"] for n in xs]
            # max(0, .): the Wilson bounds at 0 or 1 correct carry rounding noise of 1e-17 on the wrong side
            err = [[max(0.0, y - points[n]["greedy_ci"][0]) for n, y in zip(xs, ys)],
                   [max(0.0, points[n]["greedy_ci"][1] - y) for n, y in zip(xs, ys)]]
            offset = [x + (i - 2) * 0.015 * span for x in xs]  # side by side, so the bars do not hide each other
            style = {"color": "black", "linestyle": "--", "linewidth": 2} if task_type == "all" else {}
            ax.errorbar(offset, ys, yerr=err, marker="o", capsize=3, label=task_type, **style)
        ax.set_title(model)
        ax.set_xlabel("context tokens (0 = relevant documents only)")
        ax.set_ylim(-0.05, 1.05)
    axes[0][0].set_ylabel("greedy accuracy")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    r = m_sub.add_parser("report", help="Table and plot of accuracy per task type against context length.",
                         description="Merge `rewardflow eval` results of MathHay rows into DIR/mathhay_table.md and "
                         "DIR/mathhay_accuracy.png.\n\nexample:\n  rewardflow mathhay report --out docs "
                         "--results smollm2=runs/mh_eval_2k/results.json smollm2=runs/mh_eval_4k/results.json",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--results", nargs="+", required=True, help="MODEL=results.json of `rewardflow eval` (repeat a model for "
                   "its other lengths)")
    r.add_argument("--out", required=True, help="directory for mathhay_table.md and mathhay_accuracy.png")
    r.set_defaults(func=_report)
