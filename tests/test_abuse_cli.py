"""The command line under hostile use: a used or foreign --out is refused (and kept), a locked run directory is
refused, bad configs and counts are one-line errors with exit code 2 and no traceback."""
import pytest

from rewardflow.atomic import MARKER, RunLock
from rewardflow.recipes.cli import main

FAST = ["sft.steps=2", "trainer.steps=1", "eval.n_samples=1", "eval.ks=[1]", "data.eval_size=2", "model.hidden_size=16",
        "model.layers=1", "model.heads=2", "model.intermediate_size=32", "rollout.prompts_per_step=2", "rollout.group_size=2",
        "rollout.max_new_tokens=8", "eval.max_new_tokens=8", "trainer.eval_every=0", "trainer.eval_problems=2"]


def _run(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


def test_a_foreign_directory_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.txt").write_text("precious")
    (out / "sub").mkdir()
    rc, err = _run(capsys, ["quickstart", "--quiet", "--out", str(out), *FAST])
    assert rc == 2 and "already holds files" in err and "Traceback" not in err
    assert (out / "results.txt").read_text() == "precious" and (out / "sub").is_dir()


def test_an_earlier_run_needs_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / MARKER).write_text("{}")
    (out / "metrics.jsonl").write_text("")
    rc, err = _run(capsys, ["train", "--config", "configs/quickstart.yaml", "--quiet", "--out", str(out), *FAST])
    assert rc == 2 and "--resume" in err and "--overwrite" in err


def test_a_locked_run_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / MARKER).write_text("{}")
    with RunLock(out):  # another live run owns it
        rc, err = _run(capsys, ["quickstart", "--quiet", "--resume", "--out", str(out), *FAST])
    assert rc == 2 and "lock" in err.lower()


def test_overwrite_replaces_only_after_success(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    # a config error stops the run before anything is touched
    rc, _ = _run(capsys, ["quickstart", "--quiet", "--overwrite", "--out", str(out), *FAST, "rollout.top_p=2"])
    assert rc == 2 and (out / "old.txt").read_text() == "old"
    assert _run(capsys, ["quickstart", "--quiet", "--overwrite", "--out", str(out), *FAST])[0] == 0
    assert not (out / "old.txt").exists() and (out / "results.json").is_file()
    assert not list(tmp_path.glob(".run.replaced-*")), "the old copy is deleted once the new run succeeded"


def test_rm_train_never_replaces_a_directory_without_overwrite(tmp_path, capsys):
    out = tmp_path / "rm"
    out.mkdir()
    (out / "results.json").write_text("{}")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "1 + 1 =", "steps": ["2"], "label": 1}\n')
    rc, err = _run(capsys, ["rm", "train", "--kind", "orm", "--init", str(tmp_path / "none"), "--labels", str(rows), "--out", str(out)])
    assert rc == 2 and "--overwrite" in err and (out / "results.json").read_text() == "{}"


@pytest.mark.parametrize("argv, message", [
    (["quickstart", "rollout.prompts_per_step=0"], "rollout.prompts_per_step=0 must be >= 1"),
    (["quickstart", "sft.batch_size=0"], "sft.batch_size=0 must be >= 1"),
    (["quickstart", "model.device=banana"], "not a torch device"),
    (["train", "--config", "configs"], "is a directory"),
])
def test_config_errors_are_one_line(tmp_path, capsys, argv, message):
    rc, err = _run(capsys, [*argv, "--out", str(tmp_path / "x")])
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists(), "nothing is created for a run that cannot start"


@pytest.mark.parametrize("verb", [["eval", "--model", "m", "--n", "0"], ["search", "--strategy", "beam", "--policy", "p", "--out", "o", "--n", "0"]])
def test_counts_must_be_positive(capsys, verb):
    with pytest.raises(SystemExit) as e:
        main(verb)
    assert e.value.code == 2 and "must be >= 1" in capsys.readouterr().err


def test_a_dead_ray_worker_is_one_line_with_the_resume_hint(tmp_path, capsys, monkeypatch):
    from types import SimpleNamespace

    import rewardflow.recipes.pipeline as pipeline
    from rewardflow.distributed.ray_rollout import RayRollouts, WorkerLost

    class RayError(Exception):
        pass

    def dead(futures):
        raise RayError("The actor died unexpectedly before finishing this task.\n(50 more lines)")

    fleet = RayRollouts.__new__(RayRollouts)  # no cluster: only the error path of ray.get
    fleet.ray = SimpleNamespace(get=dead, exceptions=SimpleNamespace(RayError=RayError))
    with pytest.raises(WorkerLost, match="--resume"):
        fleet._get([])

    def run_pipeline(*a, **kw):
        fleet._get([])

    monkeypatch.setattr(pipeline, "run_pipeline", run_pipeline)
    rc, err = _run(capsys, ["quickstart", "--quiet", "--out", str(tmp_path / "run"), *FAST])
    assert rc == 2 and "rerun the same command with --resume" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("row, message", [
    ('{"prompt": "1 + 1 =", "steps": "2", "labels": [1]}', "'steps' must be a list"),
    ('{"prompt": 7, "steps": ["2"], "labels": [1]}', "'prompt' must be a string"),
    ('{"prompt": "1 + 1 =", "steps": ["2"], "labels": [NaN]}', "labels must be finite numbers"),
])
def test_bad_label_rows_are_refused_before_training(tmp_path, capsys, row, message):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(row + "\n")
    rc, err = _run(capsys, ["rm", "train", "--kind", "prm", "--init", str(tmp_path / "none"), "--labels", str(rows), "--out", str(tmp_path / "rm")])
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "rm").exists()


def test_overrides_may_follow_options(tmp_path, capsys):
    # the override after --out reaches the config (its error proves it was read), and an unknown option still fails
    rc, err = _run(capsys, ["train", "--config", "configs/quickstart.yaml", "--out", str(tmp_path / "x"), "rollout.top_p=2"])
    assert rc == 2 and "rollout.top_p=2.0 must be in" in err
    with pytest.raises(SystemExit):
        main(["train", "--config", "configs/quickstart.yaml", "--out", str(tmp_path / "x"), "--bogus"])


def test_out_pointing_at_a_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    rc, err = _run(capsys, ["quickstart", "--quiet", "--out", str(f), *FAST])
    assert rc == 2 and "Traceback" not in err and f.read_text() == "keep me"
