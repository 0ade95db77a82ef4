"""SFT on your own data: prompt/completion and messages rows from .jsonl and .parquet, errors with file and line, the
seeded epoch order, packing (worked by hand, and equal to the unpacked loss when each row holds one example),
`rewardflow sft` end to end, and the RL warm-start from any SFT file."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from rewardflow.data import DataError
from rewardflow.data.sft import SFTStream, load_sft_examples
from rewardflow.policy.hf import HFPolicy
from rewardflow.train.packing import pack_examples, packed_backward
from rewardflow.train.sft import sft_backward

PAIRS = [{"prompt": f"What is {a} + {b}?", "completion": f"{a} + {b} = {a + b}. Answer: {a + b}"} for a in range(1, 7) for b in range(1, 7)]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompt_completion_and_messages_rows(tmp_path):
    rows = [PAIRS[0],
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
            {"prompt": [{"role": "user", "content": "3+3?"}], "completion": [{"role": "assistant", "content": "6"}]}]
    got = load_sft_examples(_jsonl(tmp_path / "sft.jsonl", rows))
    assert got == [("What is 1 + 1?", "1 + 1 = 2. Answer: 2"), ("Be brief.\n\n2+2?", "4"), ("3+3?", "6")]
    other = _jsonl(tmp_path / "named.jsonl", [{"q": "x?", "a": "y"}])
    assert load_sft_examples(other, prompt_key="q", completion_key="a") == [("x?", "y")]


def test_parquet_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    f = tmp_path / "sft.parquet"
    pq.write_table(pa.Table.from_pylist(PAIRS[:3]), f)
    assert load_sft_examples(f) == [(r["prompt"], r["completion"]) for r in PAIRS[:3]]


@pytest.mark.parametrize("bad, message", [
    ({"prompt": "x?"}, r"no 'completion' field"),
    ({"text": "x"}, r"needs 'prompt' and 'completion'.*or 'messages'"),
    ({"messages": [{"role": "user", "content": "x"}]}, r"'messages' must end with an assistant message"),
    ({"prompt": "x?", "completion": ""}, r"'completion' must be non-empty text"),
])
def test_malformed_rows_name_file_and_line(tmp_path, bad, message):
    f = _jsonl(tmp_path / "sft.jsonl", [PAIRS[0], PAIRS[1], bad])
    with pytest.raises(DataError, match=rf"sft\.jsonl:3: malformed row: {message}"):
        load_sft_examples(f)


def test_stream_is_seeded_and_covers_each_epoch():
    examples = [(str(i), str(i)) for i in range(10)]
    a, b = SFTStream(examples, batch_size=4, seed=3), SFTStream(examples, batch_size=4, seed=3)
    batches = [a(s) for s in range(5)]  # 20 examples: two epochs of 10
    assert batches == [b(s) for s in range(5)]
    flat = [p for batch in batches for p, _ in batch]
    assert sorted(flat[:10]) == sorted(flat[10:]) == sorted(str(i) for i in range(10))  # each epoch is a permutation
    assert flat[:10] != flat[10:]  # and reshuffled
    assert [p for p, _ in SFTStream(examples, 4, seed=4)(0)] != flat[:4]


def test_pack_examples_by_hand():
    prompts = [[1, 2], [3], [4, 5, 6], [7]]
    completions = [[10], [11, 12], [13], [14, 15, 16, 17, 18, 19]]
    rows = pack_examples(prompts, completions, max_len=6)
    # ex0 = 3 tokens, ex1 = 3 tokens: 6 fit in row 0; ex2 = 4 tokens: row 1; ex3 = 7 tokens > 6: own row, cut to 6
    assert rows == [([1, 2, 10, 3, 11, 12], [0, 0, 1, 0, 1, 1]),
                    ([4, 5, 6, 13], [0, 0, 0, 1]),
                    ([7, 14, 15, 16, 17, 18], [0, 1, 1, 1, 1, 1])]


def test_packed_loss_equals_unpacked_with_one_example_per_row(tiny_ckpt):
    policy = HFPolicy.from_pretrained(tiny_ckpt)
    pairs = [(r["prompt"], r["completion"]) for r in PAIRS[:4]]
    loss_plain, n_plain = sft_backward(policy, pairs, micro_batch_size=None)
    grads_plain = [p.grad.clone() for p in policy.model.parameters() if p.grad is not None]
    policy.model.zero_grad()
    # max_len = the longest example: nothing is cut, and no two examples fit in one row (each is over half of it), so
    # every row holds exactly one example with the same tokens as the unpacked batch
    lengths = [len(p) + len(c) for p, c in zip(policy.encode_prompts([p for p, _ in pairs]), policy.completion_ids([c for _, c in pairs]))]
    assert max(lengths) < 2 * min(lengths)
    loss_packed, n_packed = packed_backward(policy, pairs, None, max_len=max(lengths))
    grads_packed = [p.grad for p in policy.model.parameters() if p.grad is not None]
    assert n_packed == n_plain
    assert loss_packed == pytest.approx(loss_plain, rel=1e-5)
    assert all(torch.allclose(g1, g2, rtol=1e-4, atol=1e-7) for g1, g2 in zip(grads_plain, grads_packed))


def test_packed_rows_hold_several_examples_and_count_every_completion_token(tiny_ckpt):
    policy = HFPolicy.from_pretrained(tiny_ckpt)
    pairs = [(r["prompt"], r["completion"]) for r in PAIRS[:8]]
    completion_tokens = sum(len(c) for c in policy.completion_ids([c for _, c in pairs]))
    rows = pack_examples(policy.encode_prompts([p for p, _ in pairs]), policy.completion_ids([c for _, c in pairs]), 128)
    assert len(rows) < len(pairs)
    loss, n = packed_backward(policy, pairs, 2, max_len=128)
    assert n == completion_tokens and loss > 0


def _run_sft(tmp_path, data, *extra):
    from rewardflow.recipes.cli import main

    out = tmp_path / "run"
    rc = main(["sft", "--data", str(data), "--out", str(out), "--quiet", "sft.steps=25", "sft.batch_size=8", "sft.lr=3e-3", "sft.warmup_steps=2",
               "model.hidden_size=32", "model.layers=1", "model.heads=2", "model.intermediate_size=64", "model.max_positions=96", *extra])
    return rc, out


def test_sft_cli_end_to_end_and_help_names_only_written_paths(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    rows = [r if i % 2 else {"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
            for i, r in enumerate(PAIRS)]
    rc, out = _run_sft(tmp_path, _jsonl(tmp_path / "mine.jsonl", rows), "logging.trackers=[tensorboard]", "sft.pack=true")
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == len(PAIRS) and report["packed"] is True
    assert report["last_loss"] < 0.7 * report["first_loss"]  # it learns the rows
    assert HFPolicy.from_pretrained(out / "sft").num_params > 0
    from rewardflow.recipes.sft_cli import SFT_HELP

    named = set(re.findall(r"DIR/([\w.]+)", SFT_HELP))
    assert named == {"sft", "metrics.jsonl", "config.json", "init", "tensorboard"}
    assert all((out / name).exists() for name in named), [n for n in named if not (out / n).exists()]


def test_sft_cli_bad_row_fails_before_the_run_dir(tmp_path, capsys):
    rc, out = _run_sft(tmp_path, _jsonl(tmp_path / "bad.jsonl", [PAIRS[0], {"prompt": "x"}]))
    assert rc == 2 and not out.exists()
    assert "bad.jsonl:2: malformed row: no 'completion' field" in capsys.readouterr().err


def test_rl_warm_start_takes_any_sft_file(tmp_path):
    """A problem file task has no worked solutions; with sft.data the warm-start trains on the user's rows instead."""
    from rewardflow.recipes.config_loader import ConfigError, load_config
    from rewardflow.recipes.warmstart import check_worked_solutions, make_source, warm_start

    problems = _jsonl(tmp_path / "problems.jsonl", [{"question": r["prompt"], "answer": r["completion"].split()[-1]} for r in PAIRS])
    base = [f"data.task={problems}", f"data.eval_path={problems}", "sft.steps=3", "sft.batch_size=4", "model.hidden_size=32",
            "model.layers=1", "model.heads=2", "model.intermediate_size=64", "model.max_positions=96"]
    cfg = load_config(overrides=base)
    with pytest.raises(ConfigError, match="sft.data=FILE"):
        check_worked_solutions(make_source(cfg), cfg)
    cfg = load_config(overrides=base + [f"sft.data={_jsonl(tmp_path / 'sft.jsonl', PAIRS)}"])
    sft_dir = warm_start(cfg, tmp_path / "ws")
    assert sft_dir == tmp_path / "ws" / "sft" and (sft_dir / "DONE").exists()
    policy = HFPolicy.from_pretrained(sft_dir)
    # the tiny tokenizer learned the SFT rows: "Answer" occurs only in their completions (never in the problems) and
    # is one token; a tokenizer that had not seen them would spell it out
    assert policy.tokenizer.tokenize("1 + 1 = 2. Answer: 2").count(" Answer") == 1
