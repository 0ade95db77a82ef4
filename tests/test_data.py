"""data/: JSONL benchmarks (formats, errors naming file:line, the real files), reasoning-gym sources, worked solutions, steps."""
import json
import re

import pytest

from rewardflow.data import DataError, GymSource, Problem, chain_steps, join_steps, load_jsonl, split_steps, worked_solution
from rewardflow.verify import Verifier


def write_jsonl(path, rows) -> str:
    """Rows are dicts (dumped as JSON) or raw strings (written as they are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


GSM = {"question": "Tom has 3 apples and buys 1,231 more. How many?", "answer": "3 + 1231 = <<3+1231=1234>>1234\n#### 1,234"}
MATH = {"problem": "What is $1/2 + 1/4$?", "solution": "$\\boxed{\\frac34}$", "answer": "\\frac{3}{4}", "subject": "Algebra", "level": 2, "unique_id": "test/algebra/1.json"}


# ----------------------------------------------------------------------------- JSONL formats


def test_load_gsm8k_format(tmp_path):
    path = write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [GSM, {"question": "q2", "answer": "-7 apples\n#### -7"}])
    p0, p1 = load_jsonl(path)
    assert (p0.id, p0.task, p0.prompt, p0.answer) == ("gsm8k/0", "gsm8k", GSM["question"], "1234")  # comma removed
    assert p0.meta == {"solution": GSM["answer"]}
    assert (p1.id, p1.answer) == ("gsm8k/1", "-7")


def test_load_math_format(tmp_path):
    path = write_jsonl(tmp_path / "math500" / "test.jsonl", [MATH])
    (p,) = load_jsonl(path)
    assert (p.id, p.task, p.prompt, p.answer) == ("math500/test/algebra/1.json", "math500", MATH["problem"], "\\frac{3}{4}")
    assert p.meta == {"subject": "Algebra", "level": 2, "unique_id": "test/algebra/1.json", "solution": MATH["solution"]}


def test_load_generic_formats(tmp_path):
    rows = [
        {"question": "2+2?", "gt": 4, "idx": 17},  # Qwen2.5-Math-eval style, numeric answer
        {"problem": "3+3?", "answer": "6", "id": "x"},
        {"question": "4+4?", "answer": "8"},  # no id field: the row's position
    ]
    path = write_jsonl(tmp_path / "mine" / "test.jsonl", rows)
    problems = load_jsonl(path)
    assert [(p.id, p.prompt, p.answer) for p in problems] == [("mine/17", "2+2?", "4"), ("mine/x", "3+3?", "6"), ("mine/2", "4+4?", "8")]
    assert all(isinstance(p.answer, str) and p.task == "mine" for p in problems)


def test_task_override_limit_and_blank_lines(tmp_path):
    path = write_jsonl(tmp_path / "d" / "x.jsonl", [{"question": "a", "answer": "1"}, "", "   ", {"question": "b", "answer": "2"}, {"question": "c", "answer": "3"}])
    assert [p.prompt for p in load_jsonl(path)] == ["a", "b", "c"]  # blank lines are skipped
    assert [p.id for p in load_jsonl(path, task="t", limit=2)] == ["t/0", "t/1"]


@pytest.mark.parametrize(
    "bad_row, words",
    [
        ('{"question": "q", "answer": "1"', "malformed row"),  # truncated JSON
        ('["question", "answer"]', "not a JSON object"),
        ('"just a string"', "not a JSON object"),
        ('{"question": "q"}', "answer"),  # missing field
        ('{"answer": "1"}', "question"),
        ('{"question": "q", "answer": null}', "answer"),
    ],
)
def test_malformed_third_row_names_file_and_line(tmp_path, bad_row, words):
    path = write_jsonl(tmp_path / "d" / "test.jsonl", [{"question": "a", "answer": "1"}, {"question": "b", "answer": "2"}, bad_row])
    with pytest.raises(DataError, match=re.escape(f"{path}:3:")) as info:
        load_jsonl(path)
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_malformed_row_line_number_counts_blank_lines(tmp_path):
    path = write_jsonl(tmp_path / "d" / "test.jsonl", [{"question": "a", "answer": "1"}, "", "{oops"])
    with pytest.raises(DataError, match=re.escape(f"{path}:3:")):
        load_jsonl(path)


def test_format_is_fixed_by_the_first_row(tmp_path):
    # a GSM8K file whose third row lacks the '#### N' line is an error, not a generic row
    path = write_jsonl(tmp_path / "gsm8k" / "test.jsonl", [GSM, GSM, {"question": "q", "answer": "no final line"}])
    with pytest.raises(DataError, match=re.escape(f"{path}:3:") + ".*####"):
        load_jsonl(path)
    # a MATH file whose third row has no answer
    broken = {k: v for k, v in MATH.items() if k != "answer"}
    path = write_jsonl(tmp_path / "math500" / "test.jsonl", [MATH, MATH, broken])
    with pytest.raises(DataError, match=re.escape(f"{path}:3:")):
        load_jsonl(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_jsonl(tmp_path / "nope.jsonl")


# ----------------------------------------------------------------------------- the real benchmark files


def test_real_gsm8k_test(shared_data):
    problems = load_jsonl(shared_data / "gsm8k" / "test.jsonl")
    assert len(problems) == 1319
    assert len({p.id for p in problems}) == 1319
    assert all(re.fullmatch(r"-?\d+", p.answer) for p in problems)  # integers, commas stripped
    assert problems[0].answer == "18" and problems[0].prompt.startswith("Janet")
    assert all(p.task == "gsm8k" and "####" in p.meta["solution"] for p in problems)


def test_real_math500_test(shared_data):
    problems = load_jsonl(shared_data / "math500" / "test.jsonl")
    assert len(problems) == 500
    assert len({p.id for p in problems}) == 500
    assert problems[0].id == "math500/test/precalculus/807.json"
    assert problems[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert {p.meta["level"] for p in problems} == {1, 2, 3, 4, 5}
    assert len({p.meta["subject"] for p in problems}) == 7
    assert all(p.answer and p.prompt for p in problems)


def test_real_qwen_eval_gsm8k_matches_openai_gsm8k(shared_data):
    ours = load_jsonl(shared_data / "gsm8k" / "test.jsonl", limit=50)
    qwen = load_jsonl(shared_data / "qwen25_math_eval" / "gsm8k" / "test.jsonl", limit=50)
    assert [(p.prompt, p.answer) for p in qwen] == [(p.prompt, p.answer) for p in ours]


def test_real_asdiv_prompt_includes_the_body(shared_data):
    (p,) = load_jsonl(shared_data / "qwen25_math_eval" / "asdiv" / "test.jsonl", limit=1)
    # row 0: body "Seven red apples and two green apples are in the basket." question "How many apples are in the basket?"
    assert "Seven red apples" in p.prompt


# ----------------------------------------------------------------------------- reasoning-gym sources


@pytest.fixture(scope="module")
def chain_sum():
    return GymSource("chain_sum", seed=0, eval_size=200, min_terms=3, max_terms=3, min_digits=1, max_digits=1)


def test_gym_eval_problems(chain_sum):
    problems = chain_sum.eval_problems
    assert len(problems) == 200
    assert [p.id for p in problems[:2]] == ["chain_sum/eval/0", "chain_sum/eval/1"]
    for p in problems:
        entry = p.meta["rg_entry"]
        assert p.prompt == entry["question"] and p.answer == str(entry["answer"]) and p.task == "chain_sum"
        assert p.meta["expression"] == entry["metadata"]["expression"] and "difficulty" not in p.meta
        a, op1, b, op2, c = p.meta["expression"].split()  # 3 one-digit terms
        assert len(a) == len(b) == len(c) == 1
        assert int(p.answer) == eval(p.meta["expression"])


def test_gym_train_and_eval_are_disjoint(chain_sum):
    train = chain_sum.train_problems(range(2000))
    eval_questions = {p.prompt for p in chain_sum.eval_problems}
    assert len(train) == 2000
    assert not eval_questions & {p.prompt for p in train}
    # precondition: with only 1-digit 3-term sums, collisions happen and the probing path is exercised
    probed = [p for i, p in enumerate(train) if p.id != f"chain_sum/train/{i}"]
    assert probed, "no training item collided with the eval split"
    assert all(p.id.startswith("chain_sum/train/") for p in train)


def test_gym_source_is_deterministic(chain_sum):
    again = GymSource("chain_sum", seed=0, eval_size=200, min_terms=3, max_terms=3, min_digits=1, max_digits=1)
    assert [p.prompt for p in again.eval_problems] == [p.prompt for p in chain_sum.eval_problems]
    idx = [0, 5, 1999, 12345]
    assert [p.prompt for p in again.train_problems(idx)] == [p.prompt for p in chain_sum.train_problems(idx)]
    assert chain_sum.train_problem(5) == chain_sum.train_problem(5)
    other = GymSource("chain_sum", seed=1, eval_size=200, min_terms=3, max_terms=3, min_digits=1, max_digits=1)
    assert [p.prompt for p in other.eval_problems] != [p.prompt for p in chain_sum.eval_problems]


def test_gym_training_stream_is_a_differently_seeded_dataset(chain_sum):
    import reasoning_gym

    stream = reasoning_gym.create_dataset("chain_sum", size=100, seed=0 + 7919, min_terms=3, max_terms=3, min_digits=1, max_digits=1)
    for i in range(100):
        if stream[i]["question"] not in chain_sum._eval_questions:
            assert chain_sum.train_problem(i).prompt == stream[i]["question"]


def test_gym_unknown_task_and_bad_options():
    with pytest.raises(ValueError, match="no_such_task"):
        GymSource("no_such_task")
    with pytest.raises(ValueError, match="chain_sum"):
        GymSource("chain_sum", min_terms=0)


# ----------------------------------------------------------------------------- worked solutions


@pytest.mark.parametrize(
    "expression, steps",
    [
        ("4 - 1 - 7", ["4 - 1 = 3", "3 - 7 = -4"]),  # 4-1 = 3, 3-7 = -4
        ("12 + 30 - 50 + 8", ["12 + 30 = 42", "42 - 50 = -8", "-8 + 8 = 0"]),  # a negative intermediate, then back to 0
        ("0 - 9", ["0 - 9 = -9"]),
        ("5-7", ["5 - 7 = -2"]),  # no spaces
        ("2 * 3 + 4", ["2 * 3 = 6", "6 + 4 = 10"]),  # left to right
        ("9999 - 1", ["9999 - 1 = 9998"]),
    ],
)
def test_chain_steps_by_hand(expression, steps):
    assert chain_steps(expression) == steps


@pytest.mark.parametrize("expression", ["7", "4 +", "", "4 + + 5"])
def test_chain_steps_rejects_non_chains(expression):
    with pytest.raises(ValueError, match="not a chain"):
        chain_steps(expression)


def test_worked_solution_from_meta_and_from_prompt():
    expected = "4 - 1 = 3\n3 - 7 = -4\nAnswer: -4"
    from_meta = Problem(id="a", prompt="ignored", answer="-4", task="chain_sum", meta={"expression": "4 - 1 - 7"})
    from_prompt = Problem(id="b", prompt="State the final answer to the following arithmetic problem: 4 - 1 - 7 =", answer="-4", task="chain_sum")
    assert worked_solution(from_meta) == expected
    assert worked_solution(from_prompt) == expected
    assert split_steps(expected) == ["4 - 1 = 3", "3 - 7 = -4", "Answer: -4"]


def test_worked_solutions_agree_with_reasoning_gym_and_the_verifier():
    # reasoning-gym's own defaults: 2-6 terms of 1-4 digits
    problems = GymSource("chain_sum", seed=3, eval_size=200).eval_problems
    assert len({p.meta["num_terms"] for p in problems}) >= 4
    solutions = [worked_solution(p) for p in problems]
    for p, text in zip(problems, solutions):
        assert text.splitlines()[-1] == f"Answer: {p.answer}"
        assert len(split_steps(text)) == p.meta["num_terms"]  # num_terms - 1 operations + the answer line
    with Verifier() as verifier:
        results = verifier.verify(problems, solutions)
        assert [r.correct for r in results] == [True] * 200
        assert [r.pred for r in results] == [p.answer for p in problems]
        # the check is not vacuous: an answer off by one is rejected
        off = [text.rsplit("Answer: ", 1)[0] + f"Answer: {int(p.answer) + 1}" for p, text in zip(problems[:20], solutions[:20])]
        assert not any(r.correct for r in verifier.verify(problems[:20], off))


def test_worked_solution_with_negative_terms():
    problems = GymSource("chain_sum", seed=0, eval_size=20, allow_negation=True).eval_problems
    assert any(re.search(r"(^|[+\-] )-\d", p.meta["expression"]) for p in problems)  # precondition: negative terms occur
    for p in problems:
        assert worked_solution(p).splitlines()[-1] == f"Answer: {p.answer}"


# ----------------------------------------------------------------------------- steps


@pytest.mark.parametrize(
    "text, steps",
    [
        ("a\nb\nc", ["a", "b", "c"]),  # no blank line: lines
        ("a\nb\n\nc", ["a\nb", "c"]),  # blank lines present: paragraphs
        ("  a  \n\n\n\n  b\n", ["a", "b"]),  # stripped, empty pieces dropped
        ("a\n \nb", ["a", "b"]),  # a whitespace-only line is no blank line, but empty after stripping
        ("", []),
        ("   \n\n  ", []),
        ("one line", ["one line"]),
    ],
)
def test_split_steps(text, steps):
    assert split_steps(text) == steps


def test_join_then_split_round_trip():
    steps = ["2 + 3 = 5", "5 - 1 = 4", "Answer: 4"]
    assert split_steps(join_steps(steps)) == steps
    assert split_steps(join_steps(["x = 1\ny = 2", "Answer: 3"], sep="\n\n")) == ["x = 1\ny = 2", "Answer: 3"]
