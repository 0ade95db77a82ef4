"""Reports for reward-model evaluations: results.json, a Markdown table file, PNG plots (Agg, no display)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

Table = tuple[str, list[str], list[list[object]]]  # (title, headers, rows)


def _cell(value: object) -> str:
    if isinstance(value, float):  # percentages read best with 2 decimals, small raw values with 4
        return "–" if math.isnan(value) else f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"
    return "–" if value is None else str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out: Path, title: str, results: dict, tables: Sequence[Table], notes: Sequence[str] = ()) -> None:
    """DIR/results.json (everything) and DIR/results.md (the tables, then the notes)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")
    parts = [f"# {title}", ""]
    for table_title, headers, rows in tables:
        parts += [f"## {table_title}", "", markdown_table(headers, rows), ""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    (out / "results.md").write_text("\n".join(parts))


def _figure():
    # The object API with an Agg canvas: no global backend switch, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def save_lines(path: Path, xs: Sequence[float], series: dict[str, Sequence[float]], *, xlabel: str, ylabel: str,
               title: str, logx: bool = False) -> Path:
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for name, ys in series.items():
        ax.plot(list(xs), list(ys), marker="o" if len(xs) <= 16 else None, label=name)
    if logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(xs), [str(x) for x in xs])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def save_bars(path: Path, labels: Sequence[str], series: dict[str, Sequence[float]], *, ylabel: str, title: str) -> Path:
    fig = _figure()
    fig.set_size_inches(min(16.0, max(6.4, 0.3 * len(labels) * max(1, len(series)))), 5.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(series))
    for i, (name, ys) in enumerate(series.items()):
        ax.bar([j + i * width for j in range(len(labels))], list(ys), width=width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], list(labels), rotation=60, ha="right", fontsize=7)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path
