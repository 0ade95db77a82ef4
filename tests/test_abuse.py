"""Loses nothing, runs nothing it should not: crashes mid-replace, foreign output directories, concurrent runs,
pickled checkpoints, torn metrics, hostile scorer.json files and hostile data files (hostile model output in the
verifier: test_verify.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rewardflow import atomic
from rewardflow.atomic import MARKER, OutDirError, RunLock, atomic_path, claim_out_dir, clean_stale, prepare_out_dir
from rewardflow.data.jsonl import load_jsonl, read_rows, step_list
from rewardflow.data.problem import DataError
from rewardflow.rewards.registry import load_scorer
from rewardflow.train.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint
from rewardflow.train.metrics import MetricsLog


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ----------------------------------------------------------------------------- 1. atomic replace


def _fill(d: Path, text: str) -> None:
    d.mkdir()
    (d / "f").write_text(text)


def test_replacing_a_directory_keeps_the_old_one_until_the_new_one_is_in(tmp_path, monkeypatch):
    target = tmp_path / "ckpt"
    _fill(target, "old")
    # the process "dies" at the rename that moves the new version in: the old one must still be somewhere
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real_rename, real_replace = os.rename, os.replace

    def dying(real):
        def move(src, dst):
            if Path(src).name.startswith(".ckpt.tmp"):
                raise KeyboardInterrupt("killed")
            return real(src, dst)
        return move

    monkeypatch.setattr(atomic.os, "rename", dying(real_rename))
    monkeypatch.setattr(atomic.os, "replace", dying(real_replace))
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            _fill(tmp, "new")
    assert (target / "f").read_text() == "old"


@pytest.mark.parametrize("exchange", [True, False])  # renameat2 swap, or old aside / new in / old deleted
def test_replace_swaps_directories_and_leaves_no_temporaries(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    target = tmp_path / "ckpt"
    _fill(target, "old")
    with atomic_path(target) as tmp:
        _fill(tmp, "new")
    assert (target / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_clean_stale_restores_an_aside_copy_and_removes_dead_temporaries(tmp_path):
    dead = _dead_pid()
    _fill(tmp_path / f".ckpt.old{dead}", "old")  # died between "old aside" and "new in"
    _fill(tmp_path / f".ckpt.tmp{dead}", "half")
    _fill(tmp_path / f".other.tmp{os.getpid()}", "mine, in use")
    clean_stale(tmp_path)
    assert (tmp_path / "ckpt" / "f").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.tmp{os.getpid()}", "ckpt"]


def test_out_dir_refuses_foreign_content_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(OutDirError, match="not written by rewardflow"):
        prepare_out_dir(out)
    with pytest.raises(OutDirError, match="resume and overwrite"):
        prepare_out_dir(out, overwrite=True, resume=True)
    aside = prepare_out_dir(out, overwrite=True)
    # moved aside, not deleted: a run that crashes before finishing loses nothing
    assert (aside / "thesis.tex").read_text() == "years of work"
    assert (out / MARKER).is_file() and not (out / "thesis.tex").exists()
    atomic.finish_out_dir(aside)
    assert not aside.exists()


def test_out_dir_accepts_missing_empty_and_our_own(tmp_path):
    assert prepare_out_dir(tmp_path / "new") is None and (tmp_path / "new" / MARKER).is_file()
    (tmp_path / "empty").mkdir()
    assert prepare_out_dir(tmp_path / "empty") is None
    (tmp_path / "new" / "metrics.jsonl").write_text("{}\n")
    assert prepare_out_dir(tmp_path / "new", resume=True) is None
    assert (tmp_path / "new" / "metrics.jsonl").read_text() == "{}\n"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutDirError, match="is a file"):
        prepare_out_dir(tmp_path / "file")


def test_run_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from rewardflow.atomic import RunLock\n"
                               f"RunLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutDirError, match=f"pid {holder.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock file (with its pid) is still there and is taken over
    assert (tmp_path / atomic.LOCK).read_text().strip() == str(holder.pid)
    with RunLock(tmp_path):
        assert (tmp_path / atomic.LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(OutDirError, match="in use"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / atomic.LOCK).exists()


def test_claim_out_dir_keeps_replaced_content_when_the_run_fails(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "data.csv").write_text("precious")
    with pytest.raises(RuntimeError):
        with claim_out_dir(out, overwrite=True):
            raise RuntimeError("run crashed")
    [aside] = tmp_path.glob(".out.replaced-*")
    assert (aside / "data.csv").read_text() == "precious" and (out / MARKER).is_file()
    with claim_out_dir(out, overwrite=True):  # replaces the crashed run's partial output, on success deletes it
        (out / "results.json").write_text("{}")
    assert list(tmp_path.glob(".out.replaced-*")) == [aside] and (out / "results.json").exists()
    assert (aside / "data.csv").read_text() == "precious"  # an earlier aside is the user's to delete


# ----------------------------------------------------------------------------- 2. checkpoints


class _Saves:
    """Stands in for a model / tokenizer: save_pretrained writes one small file."""

    def __init__(self, name):
        self.name = name

    def save_pretrained(self, d):
        Path(d).mkdir(exist_ok=True)
        (Path(d) / self.name).write_text("weights")

    def named_modules(self):  # checkpoints ask whether a model carries LoRA adapters: this one has none
        return iter(())


def _trainer(lr=0.1):
    import torch

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def _save(run, step, opt, sched, extra=None):
    from types import SimpleNamespace

    policy = SimpleNamespace(model=_Saves("model.safetensors"), tokenizer=_Saves("tokenizer.json"))
    return save_checkpoint(run, step, policy, opt, sched, {"x": 1}, extra=extra)


def test_trainer_state_round_trips_without_pickle(tmp_path):
    import random

    import numpy as np
    import torch

    _, opt, sched = _trainer()
    torch.manual_seed(3), random.seed(3), np.random.seed(3)
    extra = {"critic": {"weights": {"w": torch.ones(2)}, "opt": opt.state_dict()}, "scorers": {0: {"opt": None}}}
    _save(tmp_path, 1, opt, sched, extra)
    draws = (torch.rand(2), random.random(), np.random.rand())
    torch.manual_seed(9), random.seed(9), np.random.seed(9)
    _, opt2, sched2 = _trainer(lr=0.5)
    state = load_trainer_state(latest_checkpoint(tmp_path), opt2, sched2)
    assert state["step"] == 1 and torch.equal(state["extra"]["critic"]["weights"]["w"], torch.ones(2))
    assert torch.equal(torch.rand(2), draws[0]) and random.random() == draws[1] and np.random.rand() == draws[2]
    assert sched2.get_last_lr() == sched.get_last_lr()
    a, b = opt.state_dict()["state"][0], opt2.state_dict()["state"][0]
    assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["step"], b["step"])


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_crafted_trainer_state_runs_no_code(tmp_path, monkeypatch):
    import torch

    _, opt, sched = _trainer()
    ckpt = _save(tmp_path, 1, opt, sched)
    torch.save({"step": 1, "optimizer": _Boom()}, ckpt / "trainer_state.pt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="trainer_state.pt"):
        load_trainer_state(latest_checkpoint(tmp_path) or ckpt, opt, sched)
    assert not (tmp_path / "PWNED").exists()


def test_latest_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    import shutil

    _, opt, sched = _trainer()
    for step in (2, 4, 6):
        _save(tmp_path, step, opt, sched)
    root = tmp_path / "checkpoints"
    shutil.rmtree(root / "step_000006")  # `latest` names a directory that is gone
    (root / "step_000004" / "model.safetensors").write_text("trunc")  # and the next one lost bytes
    with pytest.warns(RuntimeWarning, match="step_000002"):
        assert latest_checkpoint(tmp_path).name == "step_000002"
    (root / "latest").write_text("../../../etc")  # a pointer out of the run is not followed
    with pytest.warns(RuntimeWarning):
        assert latest_checkpoint(tmp_path).name == "step_000002"
    (root / "latest").unlink()  # died before the first pointer was written
    assert latest_checkpoint(tmp_path).name == "step_000002"


def test_stale_checkpoint_temporaries_are_cleaned(tmp_path):
    _, opt, sched = _trainer()
    root = tmp_path / "checkpoints"
    root.mkdir()
    dead = _dead_pid()
    (root / f".step_000002.tmp{dead}").mkdir()
    (root / f".step_000002.tmp{dead}" / "model.safetensors").write_text("half")
    assert latest_checkpoint(tmp_path) is None and not (root / f".step_000002.tmp{dead}").exists()
    (root / f".step_000004.tmp{dead}").mkdir()
    _save(tmp_path, 2, opt, sched)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_000002"]


# ----------------------------------------------------------------------------- 3. metrics.jsonl


def _metrics(tmp_path) -> Path:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (1, 2, 3):
        log.log(step, {"loss/sft": 1.0 / step}, phase="sft")
    for step in (0, 1, 2, 3):
        log.log(step, {"reward/mean": step / 10})
    return log.path


def test_resume_keeps_the_sft_rows_and_drops_only_rl_rows_after_the_checkpoint(tmp_path):
    path = _metrics(tmp_path)
    rows = MetricsLog(path, resume_after=1).read()
    assert [(r["phase"], r["step"]) for r in rows] == [("sft", 1), ("sft", 2), ("sft", 3), ("rl", 0), ("rl", 1)]
    # untagged rows (older logs): the sft keys tell them apart
    path.write_text('{"step": 2, "loss/sft": 0.5}\n{"step": 2, "reward/mean": 0.1}\n')
    assert MetricsLog(path, resume_after=1).read() == [{"step": 2, "loss/sft": 0.5}]
    # no checkpoint yet: the RL phase starts over, the warm-start's rows stay
    path = _metrics(tmp_path)
    assert {r["phase"] for r in MetricsLog(path, resume_after=-1).read()} == {"sft"}


def test_a_truncated_last_line_is_dropped_with_a_warning(tmp_path):
    path = _metrics(tmp_path)
    path.write_text(path.read_text() + '{"phase": "rl", "step": 4, "rew')  # killed mid-write
    with pytest.warns(RuntimeWarning, match=r"metrics.jsonl:8: dropping a truncated last line"):
        log = MetricsLog(path, resume_after=3)
    assert len(log.read()) == 7
    log.log(4, {"reward/mean": 0.4})
    assert log.read()[-1] == {"phase": "rl", "step": 4, "reward/mean": 0.4}


def test_a_bad_line_inside_metrics_is_an_error_naming_file_and_line(tmp_path):
    path = _metrics(tmp_path)
    lines = path.read_text().splitlines()
    lines[2] = "garbage"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:3: not a JSON line"):
        MetricsLog(path, resume_after=1)


# ----------------------------------------------------------------------------- 4. scorer.json paths and cycles


def _scorer_dir(d: Path, meta: dict) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "scorer.json").write_text(json.dumps(meta))
    return d


def test_relative_scorer_paths_may_not_leave_the_scorer_directory(tmp_path):
    _scorer_dir(tmp_path / "outside", {"kind": "ensemble", "members": ["verifier"]})
    ens = _scorer_dir(tmp_path / "e", {"kind": "ensemble", "members": ["../outside"]})
    with pytest.raises(ValueError, match=r"members\[0\] '../outside' leaves the scorer directory"):
        load_scorer(str(ens))
    sneaky = _scorer_dir(tmp_path / "e2", {"kind": "ensemble", "members": ["sub/../../outside"]})
    with pytest.raises(ValueError, match="leaves the scorer directory"):
        load_scorer(str(sneaky))
    judge = _scorer_dir(tmp_path / "j", {"kind": "judge", "policy": "../../../home/someone/model"})
    with pytest.raises(ValueError, match="policy '../../../home/someone/model' leaves the scorer directory"):
        load_scorer(str(judge))
    # absolute paths are explicit and allowed; names like "verifier" still work
    ok = _scorer_dir(tmp_path / "e3", {"kind": "ensemble", "members": [str(tmp_path / "outside"), "verifier"]})
    assert len(load_scorer(str(ok)).scorers) == 2


def test_an_ensemble_that_contains_itself_is_a_clear_error(tmp_path):
    me = _scorer_dir(tmp_path / "me", {"kind": "ensemble", "members": ["."]})
    with pytest.raises(ValueError, match="cycle"):
        load_scorer(str(me))
    a = _scorer_dir(tmp_path / "a", {"kind": "ensemble", "members": ["verifier", str(tmp_path / "b")]})
    _scorer_dir(tmp_path / "b", {"kind": "ensemble", "members": [str(tmp_path / "a")]})
    with pytest.raises(ValueError, match=r"cycle: .*a -> .*b -> .*a"):
        load_scorer(str(a))
    # the same member twice is not a cycle
    twice = _scorer_dir(tmp_path / "t", {"kind": "ensemble", "members": [str(tmp_path / "outside2"), str(tmp_path / "outside2")]})
    _scorer_dir(tmp_path / "outside2", {"kind": "ensemble", "members": ["verifier"]})
    assert len(load_scorer(str(twice)).scorers) == 2


@pytest.mark.parametrize("meta", [[1, 2], {"kind": "ensemble", "members": "verifier"}, {"kind": "ensemble", "members": [["x"]]},
                                  {"kind": "judge"}])
def test_malformed_scorer_json_is_a_clear_error(tmp_path, meta):
    d = tmp_path / "s"
    d.mkdir()
    (d / "scorer.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="scorer.json"):
        load_scorer(str(d))


# ----------------------------------------------------------------------------- 6. hostile data files


def _load(path):
    return load_jsonl(path, task="t")


@pytest.mark.parametrize("content, message", [
    ('{"question": "1+1?", "answer": "2"}\n'.encode("utf-16"), "UTF-16"),
    ('{"question": "1+1?", "answer": "2"}\n'.encode("utf-16-le"), "NUL bytes"),
    (b'{"question": "1+1?", "answer": "2"}\n\x89PNG\r\n\x1a\n\xff\xd8\xff\n', r":2: not UTF-8 text"),
    (b'{"question": "q", "answer": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", r":1: malformed row: JSON nested too deeply"),
    (b'{"question": 12, "answer": "2"}\n', r":1: malformed row: the question must be a string, got int"),
    (b'{"question": ["a"], "answer": "2"}\n', "must be a string, got list"),
    (b'{"question": "q", "answer": {"x": 1}}\n', "answer must be a string or a number, got dict"),
    (b'{"question": "q", "answer": "2", "body": 7}\n', "'body' must be a string"),
    (b'{"question": "q", "answer": "#### 2"}\n{"question": "q", "answer": 3}\n', r":2: malformed row: 'answer' must be a string"),
])
def test_hostile_data_files_are_one_line_errors_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as e:
        _load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_huge_line_is_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"question": "q", "answer": "1"}\n{"question": "' + b"x" * (11 * 2**20) + b'", "answer": "1"}\n')
    with pytest.raises(DataError, match=r"big.jsonl:2: line longer than 10485760 bytes"):
        _load(path)
    with pytest.raises(DataError, match=r":2: line longer than 100 bytes"):
        list(read_rows(path, dict, max_line_bytes=100))


def test_numbers_as_answers_and_a_utf8_bom_are_fine(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"question": "1+1?", "answer": 2}\n{"problem": "p", "unique_id": "u", "answer": 0.5}\n')
    assert [p.answer for p in _load(path)] == ["2", "0.5"]


@pytest.mark.parametrize("steps, message", [("first step", "'steps' must be a list of strings, got str"),
                                            (3, "'steps' must be a list of strings, got int"), ([["a"]], r"'steps'\[0\] must be a string, got list"),
                                            ([None], r"'steps'\[0\] must be a string, got NoneType")])
def test_steps_must_be_a_list_of_strings(tmp_path, steps, message):
    path = tmp_path / "sol.jsonl"
    path.write_text(json.dumps({"prompt": "q", "steps": ["a", 2]}) + "\n" + json.dumps({"prompt": "q", "steps": steps}) + "\n")
    rows = read_rows(path, step_list, what="solution row")
    assert next(rows) == (1, ["a", "2"])
    with pytest.raises(DataError, match=f"sol.jsonl:2: malformed solution row: {message}"):
        next(rows)
