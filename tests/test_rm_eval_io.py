"""Scores files (streamed, checked, errors with file:line), the runner registry, and robustness probes."""
import pytest

from rewardflow.data.problem import Problem
from rewardflow.eval.rm import (BENCHES, ScoreItem, ScoresFileError, default_data_root, probe_table, read_scores,
                                run_rm_eval, write_scores)
from rewardflow.rewards.base import StepScores

TOL = dict(abs=1e-12)
ITEMS = [ScoreItem("a", Problem("p", "q", None, "t"), ("s1", "s2")), ScoreItem("b", Problem("p", "q", None, "t"), ("s1",))]


def _write(tmp_path, text):
    path = tmp_path / "scores.jsonl"
    path.write_text(text)
    return path


def test_scores_roundtrip(tmp_path):
    path = write_scores(tmp_path / "s.jsonl", {"a": StepScores([0.1, 0.9], 0.9), "b": StepScores([], 2.5)})
    got = read_scores(path, ITEMS)
    assert got["a"].steps == [0.1, 0.9] and got["b"].steps == [] and got["b"].outcome == 2.5


@pytest.mark.parametrize("text, line, message", [
    ('{"id": "a", "step_scores": [1, 2]}\n{"id": "b", "step_scores": [1]\n', 2, "malformed JSON"),
    ('{"id": "a", "step_scores": [1, 2]}\n\n{"id": "zz", "outcome_score": 1}\n', 3, "unknown id 'zz'"),
    ('{"id": "a", "step_scores": [1]}\n', 1, "has 1 step scores, expected 2"),
    ('{"id": "b", "outcome_score": 1}\n{"id": "b", "outcome_score": 2}\n', 2, "duplicate id 'b'"),
    ('{"id": "b", "step_scores": ["x"]}\n', 1, "list of finite numbers"),
    ('{"id": "b", "outcome_score": NaN}\n', 1, "finite number"),
    ('{"id": "b"}\n', 1, "neither"),
    ('[1, 2]\n', 1, 'object with an "id"'),
])
def test_bad_rows_name_file_and_line(tmp_path, text, line, message):
    path = _write(tmp_path, text)
    with pytest.raises(ScoresFileError, match=message) as err:
        read_scores(path, ITEMS)
    assert str(err.value).startswith(f"{path}:{line}:")


def test_missing_ids_are_an_error(tmp_path):
    path = _write(tmp_path, '{"id": "a", "step_scores": [1, 2]}\n')
    with pytest.raises(ScoresFileError, match=r"1 of 2 ids have no row, e.g. \['b'\]"):
        read_scores(path, ITEMS)


def test_runner_registry_and_data_root(tmp_path, monkeypatch):
    assert set(BENCHES) == {"processbench", "rewardbench", "rewardmath", "prmbench", "selection", "probes"}
    with pytest.raises(ValueError, match="valid: processbench, rewardbench, rewardmath, prmbench, selection, probes"):
        run_rm_eval("nope", tmp_path)
    with pytest.raises(ValueError, match="threshold applies to processbench and prmbench only"):
        run_rm_eval("selection", tmp_path, threshold=0.5)
    with pytest.raises(ValueError, match="critic is evaluated on processbench only"):
        run_rm_eval("rewardbench", tmp_path, critic=lambda prompt: "")
    monkeypatch.delenv("REWARDFLOW_DATA", raising=False)
    assert str(default_data_root()) == "../shared/data"
    monkeypatch.setenv("REWARDFLOW_DATA", str(tmp_path / "elsewhere"))
    assert default_data_root() == tmp_path / "elsewhere"
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        run_rm_eval("rewardbench", tmp_path / "out")


class LengthScorer:
    """Deterministic fake: outcome = [question given] + 0.1 * #steps + 0.01 * len(first step); no step scores."""

    def score(self, problems, solutions):
        return [StepScores([], float(bool(p.prompt)) + 0.1 * len(s) + 0.01 * len(s[0])) for p, s in zip(problems, solutions)]


def test_probe_table_with_a_fake_scorer():
    p1, p2 = Problem("p1", "What is 2+3?", "5", "t"), Problem("p2", "Name a colour", None, "t")
    problems = [p1, p1, p2, p2]
    # base scores: A 1.21, B 1.13, C 1.22, D 1.21; pairs are (A, B) and (C, D)
    solutions = [["a", "bb"], ["ccc"], ["dd", "e"], ["g", "hh"]]
    rows = {r["perturbation"]: r for r in probe_table(LengthScorer(), problems, solutions)}
    # no question: every score drops by exactly 1, no order changes
    assert rows["question_removed"]["mean_change"] == pytest.approx(-1.0, **TOL)
    assert (rows["question_removed"]["rank_flip_fraction"], rows["question_removed"]["pairs"]) == (0.0, 2)
    # numbers: only p1 has digits; the fake ignores them -> change 0 over A, B
    assert rows["numbers_changed"]["n"] == 2 and rows["numbers_changed"]["mean_change"] == pytest.approx(0.0, **TOL)
    # shuffle (two steps -> swapped): A +0.01, C -0.01, D +0.01 -> mean 0.01/3; (C, D) 1.22>1.21 becomes 1.21<1.22
    shuffled = rows["steps_shuffled"]
    assert (shuffled["n"], shuffled["pairs"]) == (3, 1)
    assert shuffled["mean_change"] == pytest.approx(0.01 / 3, abs=1e-9) and shuffled["rank_flip_fraction"] == 1.0
    # drop first: A 1.12, C 1.11, D 1.12 -> mean (-0.09 - 0.11 - 0.09) / 3; (C, D) flips
    first = rows["first_step_truncated"]
    assert first["mean_change"] == pytest.approx(-0.29 / 3, abs=1e-9) and first["rank_flip_fraction"] == 1.0
    # drop last: A 1.11, C 1.12, D 1.11 -> every change -0.1, order kept
    last = rows["last_step_truncated"]
    assert last["mean_change"] == pytest.approx(-0.1, abs=1e-9) and last["rank_flip_fraction"] == 0.0
    assert last["mean_abs_change"] == pytest.approx(0.1, abs=1e-9)
