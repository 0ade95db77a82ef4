"""Reports a person would rather look at than read: PNG plots and one self-contained HTML page."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rl_curves(rows: list[dict], path: Path) -> Path:
    """Training reward per RL step, and held-out accuracy at each periodic evaluation."""
    plt = _plt()
    rl = [r for r in rows if r.get("phase") == "rl"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in rl if "reward/mean" in r]
    axes[0].plot(steps, [r["reward/mean"] for r in rl if "reward/mean" in r], color="tab:blue", alpha=0.5, label="batch reward")
    if len(steps) >= 5:  # a running mean shows the trend through the batch noise
        vals = [r["reward/mean"] for r in rl if "reward/mean" in r]
        w = max(3, len(vals) // 10)
        smooth = [sum(vals[max(0, i - w + 1) : i + 1]) / len(vals[max(0, i - w + 1) : i + 1]) for i in range(len(vals))]
        axes[0].plot(steps, smooth, color="tab:blue", label=f"running mean ({w})")
    axes[0].set(xlabel="RL step", ylabel="mean reward (fraction correct)", title="Training reward")
    axes[0].legend()
    ev = [r for r in rl if "eval/pass@1" in r]
    for key, label in [("eval/pass@1", "pass@1 (sampled)"), ("eval/greedy", "greedy")]:
        pts = [(r["step"], r[key]) for r in ev if key in r]
        if pts:
            axes[1].plot(*zip(*pts), marker="o", label=label)
    axes[1].set(xlabel="RL step", ylabel="accuracy", title="Held-out accuracy during RL", ylim=(0, 1))
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pass_at_k(curves: dict[str, dict], ks: list[int], path: Path) -> Path:
    """pass@k against k for each named evaluation (e.g. after SFT, after RL), with 95% intervals."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, res in curves.items():
        ys = [res[f"pass@{k}"] for k in ks]
        lo = [res[f"pass@{k}_ci"][0] for k in ks]
        hi = [res[f"pass@{k}_ci"][1] for k in ks]
        ax.plot(ks, ys, marker="o", label=name)
        ax.fill_between(ks, lo, hi, alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="k", ylabel="pass@k", title="pass@k on held-out problems", ylim=(0, 1))
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:100%">'


def read_samples(path: Path) -> list[dict]:
    """The rows of a samples.jsonl (a cut-short last line, from a process killed mid-write, is skipped)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


SAMPLES_SHOWN = 3  # per evaluation and for the last RL steps: enough to read what the policy writes


def _sample_rows(results: dict, samples_file: Path) -> list[tuple[str, dict]]:
    """(where it came from, sample) for a few completions: each evaluation in `results` and the last RL steps of
    samples.jsonl (train/tracking.py), when the run wrote one."""
    out = [(f"eval after {phase.upper()}", s) for phase in ("sft", "rl") for s in (results.get(phase, {}).get("samples") or [])[:SAMPLES_SHOWN]]
    if samples_file.is_file():
        rl = [r for r in read_samples(samples_file) if r.get("phase") == "rl"]
        out += [(f"RL step {r.get('step')}", r) for r in rl[-SAMPLES_SHOWN:]]
    return out


def samples_html(results: dict, samples_file: Path) -> str:
    """A table of a few sample completions with their answer, reward and verdict ('' when there are none)."""
    rows = _sample_rows(results, samples_file)
    if not rows:
        return ""
    esc = lambda v: html.escape("" if v is None else str(v))
    body = "".join(
        f"<tr><td>{esc(where)}</td><td style='text-align:left'><pre style='white-space:pre-wrap'>{esc(s.get('prompt'))}</pre></td>"
        f"<td style='text-align:left'><pre style='white-space:pre-wrap'>{esc(s.get('completion'))}</pre></td><td>{esc(s.get('answer'))}</td>"
        f"<td>{esc(s.get('pred'))}</td><td>{esc(s.get('reward'))}</td></tr>" for where, s in rows)
    return ("<h2>Samples</h2><table><tr><th>from</th><th>prompt</th><th>completion</th><th>gold</th><th>extracted</th><th>reward</th></tr>"
            f"{body}</table>")


def write_html(results: dict, images: list[Path], path: Path, title: str = "rewardflow report") -> Path:
    """One self-contained page: the headline table, the plots, and the full results JSON."""
    phases = [k for k in ("sft", "rl") if k in results]
    keys = [k for k in ("greedy", "pass@1", "pass@2", "pass@4", "pass@8", "maj@8", "distinct_answers", "n_problems") if any(k in results[p] for p in phases)]
    head = "".join(f"<th>{html.escape(p)}</th>" for p in phases)
    body = ""
    for k in keys:
        cells = ""
        for p in phases:
            v = results[p].get(k)
            ci = results[p].get(f"{k}_ci")
            text = f"{v:.3f}" if isinstance(v, float) else str(v)
            if ci:
                text += f" <small>[{ci[0]:.3f}, {ci[1]:.3f}]</small>"
            cells += f"<td>{text}</td>"
        body += f"<tr><th>{html.escape(k)}</th>{cells}</tr>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p>Task <b>{html.escape(str(results.get("task")))}</b>, model {results.get("model", {}).get("params", "?"):,} parameters,
wall time {results.get("wall_seconds", 0):.0f} s. Accuracies are fractions with 95% intervals.</p>
<table><tr><th></th>{head}</tr>{body}</table>
{"".join(_img(i) for i in images)}
{samples_html(results, Path(path).parent / "samples.jsonl")}
<h2>results.json</h2><pre>{html.escape(json.dumps(results, indent=2))}</pre></body></html>"""
    Path(path).write_text(page)
    return Path(path)
