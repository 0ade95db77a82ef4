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


# -- conversational rows, prompt format, datasets names, mixing ------------------------------------------------------


def test_messages_rows_become_one_prompt(tmp_path):
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}], "answer": "5"},
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "1+1?"}],
             "answer": 2}]
    probs = load_problems(_jsonl(tmp_path / "chat.jsonl", rows))
    assert [p.prompt for p in probs] == ["Be brief.\n\nWhat is 2 + 3?", "User: Hi\n\nAssistant: Hello\n\nUser: 1+1?"]
    assert [p.answer for p in probs] == ["5", "2"]
    # the prompt field itself may hold the messages
    named = load_problems(_jsonl(tmp_path / "named.jsonl", [{"q": [{"role": "user", "content": "3*3?"}], "a": "9"}]), prompt_key="q", answer_key="a")
    assert named[0].prompt == "3*3?"


@pytest.mark.parametrize("messages, message", [
    ([{"role": "robot", "content": "x"}], r"messages\[0\].role='robot'"),
    ([{"role": "user", "content": 5}], r"messages\[0\].content must be a string"),
])
def test_bad_messages_name_file_line_and_message(tmp_path, messages, message):
    f = _jsonl(tmp_path / "chat.jsonl", [{"question": "ok?", "answer": "1"}, {"messages": messages, "answer": "1"}])
    with pytest.raises(DataError, match=rf"chat\.jsonl:2: malformed row: {message}"):
        load_problems(f)


def test_template_and_system_prompt_apply_to_train_and_eval(tmp_path):
    from rewardflow.recipes.config_loader import ConfigError, load_config
    from rewardflow.recipes.warmstart import make_source

    ev = _jsonl(tmp_path / "eval.jsonl", ROWS)
    cfg = load_config(overrides=[f"data.task={ev}", f"data.eval_path={ev}", "data.prompt_key=prompt", "data.answer_key=solution",
                                 "data.template='Q: {prompt} {braces} A:'", "data.system_prompt=Solve it."])
    source = make_source(cfg)
    # str.replace, not format: the literal {braces} stays
    assert source.eval_problems[0].prompt == "Solve it.\n\nQ: What is 2 + 3? {braces} A:"
    assert source.train_problems([1])[0].prompt == "Solve it.\n\nQ: What is 4 * 4? {braces} A:"
    assert source.train_problems([1])[0].answer == "16"
    with pytest.raises(ConfigError, match="must contain '{prompt}'"):
        load_config(overrides=["data.template='Question, then the answer'"])


def test_default_chain_sum_source_is_untouched():
    from rewardflow.data import GymSource
    from rewardflow.recipes.config_loader import load_config
    from rewardflow.recipes.warmstart import make_source

    source = make_source(load_config())
    assert isinstance(source, GymSource)  # no wrapper on the quickstart path: its problems stay bit for bit


def test_datasets_by_name_with_split(tmp_path, monkeypatch):
    """hf:NAME through the `datasets` library; a local dataset folder stands in for a hub name (no network here)."""
    pytest.importorskip("datasets")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    d = tmp_path / "my_ds" / "data"
    d.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"q": "1+1?", "a": "2"}, {"q": "2+2?", "a": "4"}]), d / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist([{"q": "3+3?", "a": "6"}]), d / "test-00000-of-00001.parquet")
    spec = f"hf:{tmp_path / 'my_ds'}"
    assert is_data_file(spec)
    train = load_problems(spec, prompt_key="q", answer_key="a")
    test = load_problems(spec, prompt_key="q", answer_key="a", split="test")
    assert [(p.id, p.prompt, p.answer, p.task) for p in train] == [("my_ds/0", "1+1?", "2", "my_ds"), ("my_ds/1", "2+2?", "4", "my_ds")]
    assert [p.answer for p in test] == ["6"]
    with pytest.raises(DataError, match=r"split 'valid'.*could not load"):
        load_problems(spec, prompt_key="q", answer_key="a", split="valid")
    with pytest.raises(DataError, match=r"split 'train' row 1: malformed row: no 'nope' field"):
        load_problems(spec, prompt_key="q", answer_key="nope")


def test_hub_name_parsing():
    from rewardflow.data.hub import hub_task_name, parse_hub_name

    assert parse_hub_name("hf:openai/gsm8k:main") == ("openai/gsm8k", "main")
    assert parse_hub_name("hf:openai/gsm8k") == ("openai/gsm8k", None)
    assert parse_hub_name("hf:/data/my_ds") == ("/data/my_ds", None)
    assert hub_task_name("hf:openai/gsm8k:main") == "gsm8k"
    assert not is_data_file("hf:") and is_data_file("hf:gsm8k")


def test_cumulative_weights_by_hand():
    from rewardflow.data.mix import cumulative_weights, mix_choice

    # [3, 1] -> edges 3/4 = 0.75 and 4/4 = 1.0; [1, 1, 2] -> 0.25, 0.5, 1.0
    assert cumulative_weights([3, 1]) == [0.75, 1.0]
    assert cumulative_weights([1, 1, 2]) == [0.25, 0.5, 1.0]
    assert cumulative_weights([0, 2]) == [0.0, 1.0]  # a zero weight is never drawn
    assert all(mix_choice(i, [0.0, 1.0], seed=0)[0] == 1 for i in range(200))
    with pytest.raises(ValueError):
        cumulative_weights([0, 0])


def test_mix_draws_at_the_weights_and_is_deterministic(tmp_path):
    from rewardflow.recipes.config_loader import ConfigError, load_config
    from rewardflow.recipes.warmstart import make_source

    a = _jsonl(tmp_path / "a.jsonl", [{"question": f"a{i}?", "answer": str(i)} for i in range(5)])
    b = tmp_path / "b.csv"
    b.write_text("question,answer\nb0?,0\nb1?,1\n")
    ev = _jsonl(tmp_path / "ev.jsonl", [{"question": "e?", "answer": "1"}])
    cfg = load_config(overrides=[f"data.mix=[{a},{b}]", "data.mix_weights=[3,1]", f"data.eval_path={ev}"])
    source = make_source(cfg)
    drawn = source.train_problems(range(4000))
    share_a = sum(p.prompt.startswith("a") for p in drawn) / len(drawn)
    # 3 / (3 + 1) = 0.75; the binomial standard error at n = 4000 is sqrt(0.75 * 0.25 / 4000) = 0.0068
    assert abs(share_a - 0.75) < 0.03
    assert {p.prompt for p in drawn} == {f"a{i}?" for i in range(5)} | {"b0?", "b1?"}  # every row of both is used
    assert [p.prompt for p in make_source(cfg).train_problems(range(50))] == [p.prompt for p in drawn[:50]]
    assert [p.prompt for p in source.eval_problems] == ["e?"]
    # a reasoning-gym task mixes in too; the eval split is then data.task's
    gym = make_source(load_config(overrides=[f"data.mix=[chain_sum,{a}]", "data.mix_weights=[1,1]"]))
    kinds = {p.task for p in gym.train_problems(range(40))}
    assert kinds == {"chain_sum", tmp_path.name} and gym.eval_problems[0].task == "chain_sum"
    with pytest.raises(ConfigError, match="one weight per entry of data.mix"):
        load_config(overrides=[f"data.mix=[{a},{b}]", "data.mix_weights=[1]", f"data.eval_path={ev}"])
    with pytest.raises(ConfigError, match="positive sum"):
        load_config(overrides=[f"data.mix=[{a}]", "data.mix_weights=[0]", f"data.eval_path={ev}"])
