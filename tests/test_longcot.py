"""Long-CoT text parts (data/longcot.py): the ICL prompt builder, the parser and format filter, reflection /
backtrack / refusal detection, reasoning length, and the synthetic trace generator."""
import json
import random

import pytest

from rewardflow.data import DataError, Problem
from rewardflow.data.longcot import (backtracks, build_icl_prompt, format_longcot, format_ok, is_refusal, load_icl_examples,
                                     parse_longcot, reasoning_length, reflects, refusal_text, synth_longcot)


def test_shipped_examples_load_and_are_well_formed():
    rows = load_icl_examples()
    assert len(rows) == 10
    for row in rows:  # every shipped example passes our own filter and shows the behaviours it is meant to teach
        assert format_ok(parse_longcot(format_longcot(row["thoughts"], row["response"])))
    assert sum(reflects(format_longcot(r["thoughts"], r["response"])) for r in rows) >= 8
    assert sum(backtracks(format_longcot(r["thoughts"], r["response"])) for r in rows) >= 3


def test_bad_example_file_names_file_and_line(tmp_path):
    good = json.dumps({"question": "1 + 1", "thoughts": "a\nb", "response": "Answer: 2"})
    path = tmp_path / "ex.jsonl"
    path.write_text(good + "\n" + json.dumps({"question": "2 + 2", "thoughts": ""}) + "\n")
    with pytest.raises(DataError, match=r"ex\.jsonl:2: .*'thoughts', 'response'"):
        load_icl_examples(path)
    path.write_text(good + "\n{not json\n")
    with pytest.raises(DataError, match=r"ex\.jsonl:2: not valid JSON"):
        load_icl_examples(path)
    path.write_text(good + "\n")
    assert load_icl_examples(path)[0]["question"] == "1 + 1"


def test_icl_prompt_holds_k_examples_then_the_question():
    rows = [{"question": f"Q{i}", "thoughts": f"t{i}\nu{i}", "response": f"Answer: {i}"} for i in range(4)]
    prompt = build_icl_prompt(rows, "What is 2 + 3?", k=2)
    assert prompt.count("<thought>\n") == 2 and "Q0" in prompt and "Q1" in prompt and "Q2" not in prompt
    assert prompt.index("Q1") < prompt.index("What is 2 + 3?")  # the new question comes last
    assert prompt.rstrip().endswith("Problem: What is 2 + 3?")
    assert build_icl_prompt(rows, "x").count("Example ") == 4  # k=None: all of them
    with pytest.raises(ValueError):
        build_icl_prompt(rows, "x", k=5)


def test_parser_and_filter():
    text = "<thought>\nPlan: add.\n2 + 3 = 5\n</thought>\n<response>\n2 + 3 = 5\nAnswer: 5\n</response>"
    p = parse_longcot(text)
    assert p.thoughts == "Plan: add.\n2 + 3 = 5" and p.response == "2 + 3 = 5\nAnswer: 5"
    assert format_ok(p)
    # no closing </response>: still parsed (generation often stops after the answer)
    assert parse_longcot("<thought>a\nb</thought>\nAnswer: 5").response == "Answer: 5"
    assert parse_longcot("2 + 3 = 5\nAnswer: 5") is None  # short CoT: no thoughts
    assert parse_longcot("<thought>a</thought>") is None  # nothing after the thoughts
    assert parse_longcot("</thought> <thought>") is None  # tags in the wrong order
    assert not format_ok(parse_longcot("<thought>one line</thought><response>Answer: 5</response>"))  # too short thoughts
    assert not format_ok(parse_longcot("<thought>a\nb</thought><response>the sum is 5</response>"))  # no Answer line
    assert not format_ok(None)


def test_reflection_backtrack_refusal_detection():
    long = format_longcot("1 + 2 = 4\nWait, that's wrong. Let me redo it.\n1 + 2 = 3\nCheck: 3 - 2 = 1.", "Answer: 3")
    assert reflects(long) and backtracks(long)
    plain = format_longcot("Plan: add.\n1 + 2 = 3", "Answer: 3")
    assert not reflects(plain) and not backtracks(plain)
    # only the thoughts count when there are any: a 'check' in the response alone does not
    assert not reflects(format_longcot("a\nb", "check done\nAnswer: 3"))
    assert is_refusal("3 + 4 = 7\nI don\u2019t know.") and is_refusal("I do not know")
    assert not is_refusal("3 + 4 = 7\nAnswer: 7")
    assert not is_refusal("I don't know at first, but\nAnswer: 7")  # an answer after the phrase is an answer


def test_reasoning_length_counts_steps_before_refusal():
    assert reasoning_length(refusal_text(["1 + 2 = 3", "3 + 4 = 7"])) == 2
    assert reasoning_length("I don't know.") == 0
    assert reasoning_length("1 + 2 = 3\n\n3 + 4 = 7\nAnswer: 7") == 2  # blank and Answer lines do not count


def test_synthetic_traces_are_correct_and_varied():
    prob = Problem("p", "Calculate the following: 4 + 7 - 2 + 5 =", "14", "chain_sum", {"expression": "4 + 7 - 2 + 5"})
    traces = [synth_longcot(prob, random.Random(s)) for s in range(40)]
    for t in traces:
        p = parse_longcot(t)
        assert format_ok(p) and p.response.endswith("Answer: 14")
        assert p.response.splitlines()[:3] == ["4 + 7 = 11", "11 - 2 = 9", "9 + 5 = 14"]
    n_back = sum(backtracks(t) for t in traces)
    n_refl = sum(reflects(t) for t in traces)
    assert 10 <= n_back <= 30 and 18 <= n_refl <= 38  # p = 0.5 and 0.7 of 40: about 20 and 28
    never = synth_longcot(prob, random.Random(0), p_backtrack=0.0, p_reflect=0.0)
    assert not backtracks(never) and not reflects(never)
    assert synth_longcot(prob, random.Random(3)) == synth_longcot(prob, random.Random(3))  # seeded
