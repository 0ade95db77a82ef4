"""`rewardflow rm train` and `rm score` end to end on a tiny model: train from a labels file, score a solutions
file, and read the scores back through the evaluation suite's scores-file format."""
import json

import pytest

from rewardflow.recipes.cli import main


def _write_rows(path, n=12):
    rows = []
    for i in range(n):
        wrong = i % 2
        steps = [f"{i} + 1 = {i + 1 + wrong}", f"Answer: {i + 1 + wrong}"]
        rows.append({"id": f"p{i}", "prompt": f"What is {i} + 1?", "steps": steps, "labels": [1.0 - wrong, 1.0 - wrong], "correct": not wrong})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


@pytest.mark.parametrize("kind", ["prm", "orm", "implicit"])
def test_rm_train_then_score(tiny_ckpt, tmp_path, kind):
    rows = _write_rows(tmp_path / "labels.jsonl")
    out = tmp_path / kind
    assert main(["rm", "train", "--kind", kind, "--init", str(tiny_ckpt), "--labels", str(tmp_path / "labels.jsonl"), "--epochs", "1",
                 "--batch-size", "4", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "scorer.json").read_text())["kind"] == {"implicit": "implicit_prm"}.get(kind, kind)
    assert main(["rm", "score", "--model", str(out), "--input", str(tmp_path / "labels.jsonl"), "--out", str(tmp_path / "s.jsonl"), "--quiet"]) == 0
    scored = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [s["id"] for s in scored] == [r["id"] for r in rows]
    for s, r in zip(scored, rows):
        assert isinstance(s["outcome_score"], float)
        if kind != "orm":  # process scorers give one score per step; the ORM writes the outcome only
            assert len(s["step_scores"]) == len(r["steps"])
        else:
            assert "step_scores" not in s


def test_rm_train_names_the_bad_row(tiny_ckpt, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "p", "steps": ["a"], "labels": [1.0]}) + "\n{not json\n")
    assert main(["rm", "train", "--kind", "prm", "--init", str(tiny_ckpt), "--labels", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "bad.jsonl:2: malformed training row" in capsys.readouterr().err
    assert main(["rm", "train", "--kind", "prm", "--init", str(tiny_ckpt), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "exactly one of --labels FILE and --prmbench DIR" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing half-written
