"""Bring your own data: field mapping, .json/.csv/.parquet problem files, the lazy public API, package hygiene."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rewardflow.data import DataError, is_data_file, load_jsonl, load_problems

ROWS = [{"prompt": "What is 2 + 3?", "solution": "5", "id": "a"}, {"prompt": "What is 4 * 4?", "solution": 16, "id": "b"}]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_with_custom_keys(tmp_path):
    f = _jsonl(tmp_path / "mine.jsonl", ROWS)
    with pytest.raises(DataError, match="prompt_key"):  # auto-detection fails, and says how to name the fields
        load_jsonl(f)
    probs = load_jsonl(f, prompt_key="prompt", answer_key="solution", task="mine")
    assert [(p.id, p.prompt, p.answer) for p in probs] == [("mine/a", "What is 2 + 3?", "5"), ("mine/b", "What is 4 * 4?", "16")]
    assert load_problems(f, prompt_key="prompt", answer_key="solution", task="mine") == probs


def test_one_key_named_the_other_detected(tmp_path):
    f = _jsonl(tmp_path / "x.jsonl", [{"prompt": "q?", "answer": "1"}])
    assert load_jsonl(f, prompt_key="prompt")[0].answer == "1"


def test_missing_key_names_file_row_and_key(tmp_path):
    f = _jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"prompt": "no answer here"}])
    with pytest.raises(DataError) as e:
        load_problems(f, prompt_key="prompt", answer_key="solution")
    assert f"{f}:2" in str(e.value) and "'solution'" in str(e.value) and "data.answer_key" in str(e.value)


def test_json_array_and_json_lines(tmp_path):
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps(ROWS))
    assert [p.answer for p in load_problems(arr, prompt_key="prompt", answer_key="solution")] == ["5", "16"]
    lines = _jsonl(tmp_path / "lines.json", ROWS)
    assert [p.answer for p in load_problems(lines, prompt_key="prompt", answer_key="solution", limit=1)] == ["5"]
    arr.write_text(json.dumps([ROWS[0], ["not", "a", "row"]]))
    with pytest.raises(DataError, match=r"arr\.json: row 2: malformed row"):
        load_problems(arr, prompt_key="prompt", answer_key="solution")
    arr.write_text("[{")
    with pytest.raises(DataError, match="not a JSON array"):
        load_problems(arr)


def test_csv(tmp_path):
    f = tmp_path / "mine.csv"
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["prompt", "solution"])
        w.writeheader()
        w.writerow({"prompt": "Add 1, 2 and\n3.", "solution": "6"})  # a quoted field over two lines
        w.writerow({"prompt": "What is 9 - 4?", "solution": "5"})
    probs = load_problems(f, prompt_key="prompt", answer_key="solution", task="t")
    assert [(p.id, p.prompt, p.answer) for p in probs] == [("t/0", "Add 1, 2 and\n3.", "6"), ("t/1", "What is 9 - 4?", "5")]
    # default detection works on CSV too
    f.write_text("question,answer\nWhat is 1 + 1?,2\n")
    assert load_problems(f)[0].answer == "2"
    f.write_text("prompt,solution\nq1,1\nq2\n")
    with pytest.raises(DataError, match=r"mine\.csv:3: malformed row"):
        load_problems(f, prompt_key="prompt", answer_key="solution")
    f.write_text("prompt,other\nq1,1\n")
    with pytest.raises(DataError, match=r"mine\.csv: line 2: .*'solution'"):
        load_problems(f, prompt_key="prompt", answer_key="solution")


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    f = tmp_path / "mine.parquet"
    # a parquet column has one type: the answers as integers here (load_problems gives them back as text)
    pq.write_table(pa.Table.from_pylist([{**r, "solution": int(r["solution"])} for r in ROWS]), f)
    probs = load_problems(f, prompt_key="prompt", answer_key="solution")
    assert [(p.prompt, p.answer) for p in probs] == [("What is 2 + 3?", "5"), ("What is 4 * 4?", "16")]


def test_parquet_without_pyarrow_names_what_to_install(tmp_path, monkeypatch):
    f = tmp_path / "mine.parquet"
    f.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match="pip install pyarrow"):
        load_problems(f)


def test_file_types_and_missing_files(tmp_path):
    assert all(is_data_file(n) for n in ("a.jsonl", "a.json", "a.csv", "b/a.PARQUET"))
    assert not is_data_file("chain_sum") and not is_data_file("gsm_symbolic")
    with pytest.raises(DataError, match="unknown problem file type"):
        load_problems(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError):
        load_problems(tmp_path / "nope.csv")


def test_config_and_make_source(tmp_path):
    from rewardflow.recipes.config_loader import ConfigError, load_config
    from rewardflow.recipes.warmstart import make_source

    train = tmp_path / "train.csv"
    train.write_text("prompt,solution\nWhat is 1 + 2?,3\nWhat is 2 + 2?,4\n")
    ev = _jsonl(tmp_path / "eval.jsonl", ROWS)
    cfg = load_config(overrides=[f"data.task={train}", f"data.eval_path={ev}", "data.prompt_key=prompt", "data.answer_key=solution"])
    source = make_source(cfg)
    assert [p.answer for p in source.train_problems([0, 1, 2])] == ["3", "4", "3"]
    assert [p.answer for p in source.eval_problems] == ["5", "16"]
    with pytest.raises(ConfigError, match="data.eval_path"):
        load_config(overrides=[f"data.task={train}"])
    with pytest.raises(ConfigError, match="data.prompt_key"):
        load_config(overrides=[f"data.task={train}", f"data.eval_path={ev}", "data.prompt_key=' '"])
    with pytest.raises(ConfigError, match="data.eval_path"):
        load_config(overrides=[f"data.eval_path={tmp_path / 'eval.txt'}"])


def test_import_is_light_and_public_names_resolve():
    code = ("import sys, rewardflow; assert 'torch' not in sys.modules, 'torch imported'; "
            "from rewardflow import Verifier, load_scorer, load_config, HFPolicy, Problem, Config, load_problems; "
            "assert 'torch' in sys.modules; print(Verifier.__module__, HFPolicy.__module__, load_config.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "rewardflow.verify.verifier rewardflow.policy.hf rewardflow.recipes.config_loader" in out.stdout
    import rewardflow

    assert set(rewardflow.__all__) <= set(dir(rewardflow))
    with pytest.raises(AttributeError):
        rewardflow.no_such_name


def test_license_and_metadata():
    root = Path(__file__).resolve().parents[1]
    text = (root / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"


def test_help_texts_name_real_checkpoints():
    from rewardflow.recipes import cli

    assert "rl/final" not in cli.EPILOG
