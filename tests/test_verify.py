"""verify/: extraction, equivalence, the time-limited Verifier, reasoning-gym scoring, real-data agreement."""
from __future__ import annotations

import multiprocessing as mp
import pickle
import sys
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

import rewardflow.verify.verifier as verifier_mod
from rewardflow.data.problem import Problem
from rewardflow.verify import Verifier, VerifyResult, extract_answer, is_equiv, score_text
from rewardflow.verify.agreement import agreement_report


def _p(answer: str | None, task: str = "math", **meta) -> Problem:
    return Problem(id="t", prompt="q", answer=answer, task=task, meta=meta)


# ----------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        # boxed: the last one, balanced braces, \fbox, brace-less, nested, a truncated last box
        ("so $\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
        ("first \\boxed{3}, then \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\fbox{x^2+1}", "x^2+1"),
        ("\\boxed 7", "7"),
        ("\\boxed{\\boxed{5}}", "5"),
        ("we get \\boxed{5} and then \\boxed{6", "5"),
        # boxed beats every other form
        ("The answer is 4. \\boxed{5}", "5"),
        # GSM8K
        ("48/2 = 24\n#### 1,024", "1024"),
        ("#### 72", "72"),
        # answer phrases: case-insensitive, last occurrence, trailing period and $ stripped
        ("The answer is $42$.", "42"),
        ("Answer: 3/4", "3/4"),
        ("**Answer:** 12", "12"),
        ("the answer is 5. Then again, ANSWER: 6", "6"),
        ("Final Answer: The final answer is $5.5$. I hope it is correct.", "5.5"),
        ("<answer>The answer is $x^2$.</answer>", "x^2"),
        # last number: integers, decimals, negatives, thousands commas, fractions
        ("so x = 5 - 3 = 2 apples", "2"),
        ("it costs 1,234,567.5 dollars", "1234567.5"),
        ("temperature fell to -4 degrees", "-4"),
        ("between 2024-2025", "2025"),
        ("about 0.75 of it", "0.75"),
        ("she ate 3/8 of the pie", "3/8"),
        ("the total is \u22125", "-5"),
        # found on ProcessBench gsm8k/math: LaTeX fractions and {,} separators in the fallback
        ("Therefore, $\\cos \\angle RPS = -\\frac{24}{25}$.", "-\\frac{24}{25}"),
        ("so it is 10{,}000", "10000"),
        # nothing to find
        ("I do not know.", None),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "junk",
    [None, 12, b"\\boxed{3}", "\\boxed{" * 20_000, "{" * 100_000, "<answer>" * 20_000,
     "x" * 100_000, "1" * 100_000, "\ud800\x00\u202e\\boxed{\U0001F600}", "Answer:" * 10_000],
)
def test_extract_never_raises_and_stays_fast(junk):
    t0 = time.perf_counter()
    out = extract_answer(junk)
    assert out is None or isinstance(out, str)
    assert time.perf_counter() - t0 < 1.0


# ----------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("1,000", "1000"),
        ("0.5", "1/2"),
        ("5.0", "5"),
        ("-4", "-4.0"),
        ("0.5", "\\frac{1}{2}"),
        ("\\dfrac{3}{4}", "0.75"),
        ("\\frac{2}{4}", "\\frac{1}{2}"),
        ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("[-2, 7)", "[-2,7)"),
        ("(-\\infty, 3]", "(-\\infty,3]"),
        ("2, -3", "-3, 2"),
        ("5\\sqrt{2}", "\\sqrt{50}"),
        ("(x+2)(x+5)", "x^2+7x+10"),
        ("48", "48^\\circ"),
        ("C", "\\text{(C)}"),
        # grader error in math_cot_100 (idx 72): "10{,}000" is ten thousand
        ("10000", "10{,}000"),
        # ProcessBench gsm8k: "\boxed{\15}" is a "\$15" that lost its dollar sign
        ("\\15", "15"),
    ],
)
def test_is_equiv_true(pred, gold):
    assert is_equiv(pred, gold)


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("5", "6"),
        ("-4", "4"),
        ("1/3", "0.3"),
        ("3,5", "35"),
        ("(-2, 7)", "[-2, 7)"),
        ("\\frac{1}{3}", "\\frac{1}{2}"),
        ("(3, \\pi)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("x^2+7x+9", "(x+2)(x+5)"),
        ("", "0"),
    ],
)
def test_is_equiv_false(pred, gold):
    assert not is_equiv(pred, gold)


@pytest.mark.parametrize(
    "pred, gold", [(None, "1"), ("1", None), (3, 3), ("\\frac{", "}"), ("}{", "\\boxed{"), ("\ud800", "1")]
)
def test_is_equiv_never_raises(pred, gold):
    assert is_equiv(pred, gold) in (True, False)


def test_score_text_in_a_thread_needs_no_signals():
    # math-verify's own timeouts use signal.alarm, which raises off the main thread; ours are off.
    out: list[VerifyResult] = []
    t = threading.Thread(target=lambda: out.append(score_text(_p("x^2+2x+1"), "\\boxed{(x+1)^2}")))
    t.start()
    t.join()
    assert out == [VerifyResult(True, "(x+1)^2", "ok")]


# ----------------------------------------------------------------------------- Verifier

# The first needs math-verify (a worker process), the second the fast path, the third has no answer.
PROBLEMS = [_p("x^2+2x+1"), _p("1000"), _p("7")]
TEXTS = ["so \\boxed{(x+1)^2}", "#### 1,000", "no idea"]
EXPECTED = [
    VerifyResult(True, "(x+1)^2", "ok"),
    VerifyResult(True, "1000", "ok"),
    VerifyResult(False, None, "no_answer"),
]


def test_verifier_results_and_counts():
    with Verifier(timeout_s=5.0) as v:
        assert v.verify(PROBLEMS, TEXTS) == EXPECTED
        assert v.verify([_p("3"), _p(None)], ["\\boxed{4}", "\\boxed{4}"]) == [
            VerifyResult(False, "4", "ok"), VerifyResult(False, "4", "error")  # no gold -> error
        ]
        assert v.counts == Counter(ok=3, no_answer=1, error=1, correct=2, wrong=3)


def test_fast_items_start_no_worker():
    with Verifier() as v:
        assert v.verify([_p("0.5"), _p("12")], ["\\boxed{1/2}", "so 13"])[1].correct is False
        assert v._pool is None


def test_verifier_from_thread_and_thread_pool():
    with Verifier(timeout_s=5.0) as v:
        out: list = []
        t = threading.Thread(target=lambda: out.append(v.verify(PROBLEMS, TEXTS)))
        t.start()
        t.join()
        assert out == [EXPECTED]
        with ThreadPoolExecutor(max_workers=4) as ex:
            batches = list(ex.map(lambda _: v.verify(PROBLEMS, TEXTS), range(4)))
        assert batches == [EXPECTED] * 4
        assert v.counts["correct"] == 2 * 5 and v.counts["no_answer"] == 5


def _slow_on_gold_slow(job):
    if job[0] == "equiv" and job[2] == "SLOW":
        time.sleep(60)  # far past the limit: the worker must be killed, not waited for
    return _ORIGINAL_SLOW_CHECK(job)


_ORIGINAL_SLOW_CHECK = verifier_mod._slow_check


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the patch reaches workers by fork")
@pytest.mark.parametrize("workers", [1, 2])
def test_time_limit_kills_only_the_slow_item(monkeypatch, workers):
    monkeypatch.setattr(verifier_mod, "_slow_check", _slow_on_gold_slow)
    problems = [_p("SLOW"), *PROBLEMS, _p("SLOW")]
    texts = ["\\boxed{y}", *TEXTS, "\\boxed{z}"]
    t0 = time.perf_counter()
    with Verifier(timeout_s=1.0, workers=workers) as v:
        results = v.verify(problems, texts)
        assert time.perf_counter() - t0 < 10
        timed_out = [VerifyResult(False, "y", "timeout"), VerifyResult(False, "z", "timeout")]
        assert results == [timed_out[0], *EXPECTED, timed_out[1]]
        assert v.counts == Counter(timeout=2, ok=2, no_answer=1, correct=2, wrong=3)
        # the restarted worker still judges later batches
        assert v.verify(PROBLEMS[:1], TEXTS[:1]) == EXPECTED[:1]


def _verify_in_daemon() -> tuple[list[VerifyResult], list[str], float]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        with Verifier(timeout_s=1.0) as v:
            results = v.verify([_p("SLOW"), *PROBLEMS], ["\\boxed{y}", *TEXTS]) + v.verify(PROBLEMS[:1], TEXTS[:1])
    return results, [str(w.message) for w in caught], time.perf_counter() - t0


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
def test_time_limit_holds_inside_a_daemonic_pool_worker(monkeypatch):
    # multiprocessing.Pool workers are daemonic: multiprocessing refuses them children, so the verifier forks its
    # worker itself rather than checking in-process, where a hostile item would hang the Pool worker.
    monkeypatch.setattr(verifier_mod, "_slow_check", _slow_on_gold_slow)
    with mp.get_context("fork").Pool(1) as pool:
        results, messages, seconds = pool.apply(_verify_in_daemon)
    assert results == [VerifyResult(False, "y", "timeout"), *EXPECTED, EXPECTED[0]]
    assert seconds < 10 and messages == []


def _hog_on_gold_hog(job):
    if job[0] == "equiv" and job[2] == "HOG":
        return len(bytearray(1 << 30)) > 0  # 1 GiB, past the worker's cap: MemoryError, not a machine out of memory
    return _ORIGINAL_SLOW_CHECK(job)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and the patch reaching workers by fork")
def test_worker_memory_is_capped_and_timeouts_and_errors_are_counted(monkeypatch):
    monkeypatch.setattr(verifier_mod, "_slow_check", lambda job: _hog_on_gold_hog(job) if job[2] != "SLOW" else _slow_on_gold_slow(job))
    with Verifier(timeout_s=1.0, memory_mb=256) as v:
        results = v.verify([_p("HOG"), _p("SLOW"), *PROBLEMS], ["\\boxed{x}", "\\boxed{y}", *TEXTS])
        assert results == [VerifyResult(False, "x", "error"), VerifyResult(False, "y", "timeout"), *EXPECTED]
        assert v.stats == {"verify/items": 5, "verify/timeout": 1, "verify/error": 1, "verify/memory_error": 1}
        assert v.take_stats()["verify/error"] == 1
        assert v.verify(PROBLEMS[:1], TEXTS[:1]) == EXPECTED[:1]  # the replaced worker judges on
        assert v.take_stats() == {"verify/items": 1, "verify/timeout": 0, "verify/error": 0, "verify/memory_error": 0}


@pytest.mark.parametrize("gold, text, correct", [(2, "\\boxed{2}", True), (2, "\\boxed{3}", False), (2.0, "so 2", True),
                                                 (0.5, "\\boxed{1/2}", True), (True, "\\boxed{1}", False)])
def test_numeric_gold_answers_count_like_their_text(gold, text, correct):
    with Verifier() as v:
        [r] = v.verify([_p(gold)], [text])
    assert r.correct is correct and r.status == ("error" if gold is True else "ok")
    assert score_text(_p(gold), text).correct is correct


def test_verifier_pickles_and_never_raises_on_junk():
    with Verifier(timeout_s=2.0) as v:
        v.verify(PROBLEMS, TEXTS)
        with pickle.loads(pickle.dumps(v)) as copy:
            assert copy._pool is None and copy.counts == v.counts
            assert copy.verify(PROBLEMS, TEXTS) == EXPECTED
            junk = [None, "\\boxed{" * 5000, "{" * 100_000, "\ud800", 42]
            results = copy.verify([_p("1")] * len(junk), junk)
            assert all(isinstance(r, VerifyResult) and not r.correct for r in results)
            # the copy carries the original's tallies (3 items) and adds its own (3 + 5)
            assert sum(copy.counts.values()) == 2 * (2 * len(EXPECTED) + len(junk))


# ----------------------------------------------------------------------------- reasoning-gym


def test_reasoning_gym_problem_uses_its_own_scorer():
    import reasoning_gym

    entries = list(reasoning_gym.create_dataset("chain_sum", size=2, seed=0))
    # answer=None: the gold-answer path would report "error", so "ok" proves the scorer ran
    problems = [Problem(f"cs{i}", e["question"], None, "chain_sum", {"rg_entry": e})
                for i, e in enumerate(entries)]
    right, wrong = entries[0]["answer"], str(int(entries[1]["answer"]) + 1)
    texts = [f"Adding up... <answer>{right}</answer>", f"The answer is {wrong}."]
    with Verifier() as v:
        results = v.verify(problems, texts)
        assert results == [VerifyResult(True, right, "ok"), VerifyResult(False, wrong, "ok")]
    assert score_text(problems[0], right) == VerifyResult(True, right, "ok")
    assert score_text(problems[1], "") == VerifyResult(False, None, "no_answer")


def test_reasoning_gym_numeric_answer_inside_a_sentence():
    """SmolLM2-135M-Instruct answers chain sums with one sentence ("The answer to this arithmetic
    problem is 3."); the whole sentence used to be the prediction, so right answers scored wrong."""
    import reasoning_gym

    e = next(iter(reasoning_gym.create_dataset("chain_sum", size=1, seed=3)))
    gold = e["answer"]
    p = Problem("cs", e["question"], None, "chain_sum", {"rg_entry": e})
    wrong = str(int(gold) + 1)
    with Verifier() as v:
        got = v.verify([p, p, p], [f"The answer to this arithmetic problem is {gold}.",
                                   f"The final answer to the given problem is {wrong}.", gold])
    assert got == [VerifyResult(True, gold, "ok"), VerifyResult(False, wrong, "ok"), VerifyResult(True, gold, "ok")]


# ----------------------------------------------------------------------------- real data


def test_agreement_with_stored_verdicts(shared_data):
    report = agreement_report(shared_data)
    # Measured: math_cot_100 799/800, gsm8k solutions 5276/5276, ProcessBench gsm8k 396/400,
    # ProcessBench math joined with MATH-500 111/112. Thresholds sit just below.
    floors = {"math_cot_100": (800, 0.995), "gsm8k_solutions": (5276, 0.999),
              "processbench_gsm8k": (400, 0.985), "processbench_math500": (112, 0.98)}
    for name, (n, floor) in floors.items():
        assert report[name]["n"] == n, name
        assert report[name]["rate"] >= floor, (name, report[name]["rate"], report[name]["examples"])
        assert report[name]["statuses"].get("timeout", 0) == 0, name
