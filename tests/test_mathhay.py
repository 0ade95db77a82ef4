"""MathHay: generator determinism, answers re-derived from the text, every task type, length control, placement,
the CLI's files, and `rewardflow eval` grouping accuracy by task type / length / placement."""
import json
import random
from fractions import Fraction

import pytest

from rewardflow.data import Problem, load_problems
from rewardflow.data.mathhay import (PLACEMENTS, TASK_TYPES, answer_text, approx_tokens, build_rows, evaluate,
                                     fact_from_text, load_corpus, make_question, make_row, n_operations,
                                     parse_length, rederive, with_group_fields)
from rewardflow.data.mathhay.build import SEPARATOR, corpus_haystack, doc_haystack
from rewardflow.eval.groups import accuracy_by_group


def rows(**kw):
    return [r for r, _ in build_rows(**{"lengths": [1024], "per_type": 3, "seed": 0, **kw})]


def f(i, attr, year):
    return ("fact", i, attr, year)


# -- the arithmetic, by hand ---------------------------------------------------------------------------------------

def test_answer_text_exact_numbers():
    assert answer_text(Fraction(12)) == "12"
    assert answer_text(Fraction(81, 2)) == "40.5"  # 81 / 2
    assert answer_text(Fraction(-7, 4)) == "-1.75"  # -7 / 4
    assert answer_text(Fraction(-3)) == "-3"
    with pytest.raises(ValueError):
        answer_text(Fraction(1, 3))  # 0.333...: no exact decimal, never written as an answer


def test_evaluate_and_count_operations_by_hand():
    facts = {(0, "a", 2021): 120, (0, "a", 2022): 135, (0, "a", 2023): 150, (1, "a", 2021): 30}
    fact = lambda i, attr, year: facts[(i, attr, year)]  # noqa: E731
    mean = ("mean", [f(0, "a", 2021), f(0, "a", 2022), f(0, "a", 2023)])
    assert evaluate(mean, fact) == 135  # (120 + 135 + 150) / 3 = 405 / 3
    assert n_operations(mean) == 3  # two additions and a division
    assert n_operations(("sum", mean[1])) == 2
    combo = ("-", ("+", f(0, "a", 2021), f(0, "a", 2022)), f(1, "a", 2021))
    assert evaluate(combo, fact) == 225  # (120 + 135) - 30
    assert n_operations(combo) == 2
    assert n_operations(("-", f(0, "a", 2022), f(0, "a", 2021))) == 1


def test_fact_from_text_reads_the_stated_value():
    context = ("Acme Foods: annual business summary\nAcme Foods is a firm. Its revenue came to 120 million dollars in "
               "2021, 135 million dollars in 2022 and 150 million dollars in 2023. Headcount of employees was 40 in "
               "2021, 44 in 2022 and 41 in 2023.\n\nOther Town: municipal fact sheet\nBuses in service numbered 9 in 2022.")
    assert fact_from_text(context, "Acme Foods", "revenue", 2022) == 135
    assert fact_from_text(context, "Acme Foods", "employees", 2023) == 41
    assert fact_from_text(context, "Other Town", "buses", 2022) == 9  # capitalised key word
    with pytest.raises(ValueError):
        fact_from_text(context, "Acme Foods", "revenue", 2019)  # a year the document does not state
    with pytest.raises(ValueError):
        fact_from_text(context, "Missing Farm", "cows", 2021)
    with pytest.raises(ValueError):  # two documents with one title: ambiguous, rejected
        fact_from_text(context + "\n\n" + context.split("\n\n")[0], "Acme Foods", "revenue", 2022)


def test_parse_length():
    assert parse_length("2k") == 2048 and parse_length("128K") == 131072 and parse_length("512") == 512
    assert parse_length("0") == 0
    with pytest.raises(ValueError):
        parse_length("2 tokens")


# -- generator -----------------------------------------------------------------------------------------------------

def test_deterministic_in_the_seed():
    a, b, c = rows(seed=3), rows(seed=3), rows(seed=4)
    assert a == b
    assert [r["question"] for r in a] != [r["question"] for r in c]


def test_same_questions_at_every_length():
    short, long = rows(lengths=[0]), rows(lengths=[2048])
    assert [(r["query"], r["answer"], r["placement"]) for r in short] == [(r["query"], r["answer"], r["placement"]) for r in long]
    assert all(len(s["context"]) < len(lg["context"]) for s, lg in zip(short, long))


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_every_task_type_has_its_shape(task_type):
    single_step, single_doc = task_type.startswith("ss"), task_type.endswith("sd")
    for i in range(40):
        q = make_question(random.Random(f"shape/{i}"), task_type)
        ops, names = n_operations(q.expr), [d.name for d in q.docs]
        assert ops == 1 if single_step else ops >= 2, (q.query, q.expr)
        assert len(names) == 1 if single_doc else len(set(names)) == len(names) >= 2
        assert q.query.endswith("\\boxed{}.")


def test_every_answer_rederives_from_the_context_text():
    built = rows(lengths=[0, 1024], per_type=4)
    assert {r["task_type"] for r in built} == set(TASK_TYPES)
    for r in built:
        read = lambda i, attr, year, r=r: fact_from_text(r["context"], r["relevant"][i], attr, year)  # noqa: E731
        assert answer_text(evaluate(_tuples(r["expression"]), read)) == r["answer"]
        assert r["question"].startswith(r["context"]) and r["question"].endswith(r["query"])


def test_quality_control_catches_a_context_that_disagrees():
    q = make_question(random.Random("qc"), "sssd")
    context = q.docs[0].text
    assert rederive(q, context) == q.answer
    leaf = next(_leaves(q.expr))
    value = q.docs[0].facts[leaf[2]][q.docs[0].years.index(leaf[3])]
    tampered = context.replace(f"{value} ", f"{value + 1} ", 1).replace(f"${value} ", f"${value + 1} ", 1)
    assert rederive(q, tampered) != q.answer  # the generator's record says one thing, the text another


# -- length control and placement ----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [1024, 4096])
def test_context_fills_to_the_length_without_passing_it(target):
    for r in rows(lengths=[target], per_type=2):
        assert r["context_tokens"] == approx_tokens(r["context"]) <= target
        largest = max(approx_tokens(doc) for doc in r["context"].split(SEPARATOR))
        assert target - r["context_tokens"] <= largest + 2, "stopped filling more than a document short"


def test_length_control_with_another_counter():
    words = lambda text: len(text.split())  # noqa: E731  (any tokenizer's count plugs in the same way)
    row, _ = make_row(0, "msmd", 0, 900, "middle", words)
    assert 900 - 150 < row["context_tokens"] == words(row["context"]) <= 900


def test_too_short_a_length_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot hold the relevant documents"):
        make_row(0, "msmd", 0, 50, "first", approx_tokens)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_relevant_documents_sit_where_asked(placement):
    row, _ = make_row(1, "msmd", 2, 3000, placement, approx_tokens)
    titles = [block.split("\n", 1)[0] for block in row["context"].split(SEPARATOR)]
    where = [i for i, t in enumerate(titles) if t.split(":")[0] in row["relevant"]]
    assert where == list(range(where[0], where[0] + len(row["relevant"])))  # one block
    n = len(titles)
    expected = {"first": 0, "middle": (n - len(where)) // 2, "last": n - len(where)}[placement]
    assert where[0] == expected and n == row["n_docs"] > 6
    haystack = [t for i, t in enumerate(titles) if i not in where]
    assert not any(name in t for t in haystack for name in row["relevant"])  # no distractor names a relevant entity


def test_user_corpus_pads_the_context(tmp_path):
    text = "\n\n".join(f"Paragraph {i} about the weather and the sea, with nothing to count in it at all. " * 3 for i in range(30))
    (tmp_path / "corpus.txt").write_text(text)
    paragraphs = load_corpus(tmp_path / "corpus.txt")
    row, _ = make_row(0, "ssmd", 0, 2048, "last", approx_tokens, corpus_haystack(paragraphs))
    assert "the weather and the sea" in row["context"] and row["context_tokens"] <= 2048
    assert row["context"].endswith(next(d for d in row["context"].split(SEPARATOR) if d.startswith(row["relevant"][-1])))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="no text"):
        load_corpus(tmp_path / "empty.txt")


def test_haystack_documents_are_reports_of_other_entities():
    rng = random.Random(0)
    texts = [doc_haystack(rng, {"Harbor Logistics"}) for _ in range(200)]
    assert not any(t.startswith("Harbor Logistics:") for t in texts)


# -- verifier, loader, eval grouping, CLI ---------------------------------------------------------------------------

def test_answers_are_accepted_by_the_verifier(verifier):
    built = rows(per_type=2)
    problems = [Problem(id=r["id"], prompt=r["question"], answer=r["answer"], task="mathhay") for r in built]
    right = verifier.verify(problems, [f"So the result is \\boxed{{{r['answer']}}}." for r in built])
    wrong = verifier.verify(problems, [f"\\boxed{{{Fraction(r['answer']) + 1}}}" for r in built])
    assert all(v.correct for v in right) and not any(v.correct for v in wrong)


def test_eval_groups_accuracy_by_task_type_length_and_placement():
    meta = [("sssd", 2048, "first"), ("sssd", 2048, "last"), ("msmd", 2048, "first"), ("msmd", 8192, "last")]
    problems = [Problem(id=str(i), prompt="", answer="1", task="mathhay", meta={"task_type": t, "length": n, "placement": p})
                for i, (t, n, p) in enumerate(meta)]
    res = accuracy_by_group(problems, {"greedy": [1.0, 0.0, 1.0, 1.0]})
    assert res["by_task_type"]["sssd"]["greedy"] == 0.5 and res["by_task_type"]["sssd"]["n"] == 2  # (1 + 0) / 2
    assert res["by_task_type"]["msmd"]["greedy"] == 1.0
    assert res["by_length"]["2048"]["greedy"] == pytest.approx(2 / 3, abs=1e-12)  # (1 + 0 + 1) / 3
    assert res["by_placement"]["last"]["greedy"] == 0.5  # (0 + 1) / 2
    assert res["by_task_type_x_length"]["msmd@8192"]["n"] == 1
    assert list(res["by_length"]) == ["2048", "8192"]
    lo, hi = res["by_task_type"]["sssd"]["greedy_ci"]
    assert 0 < lo < 0.5 < hi < 1
    assert accuracy_by_group([Problem(id="x", prompt="", answer="1", task="t")], {"greedy": [1.0]}) == {}


def test_rows_load_as_problems_with_their_groups(tmp_path):
    built = rows(lengths=[0], per_type=2)
    path = tmp_path / "mathhay.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in built))
    problems = with_group_fields(path, load_problems(path))
    assert [p.prompt for p in problems] == [r["question"] for r in built]
    assert [p.answer for p in problems] == [r["answer"] for r in built]
    assert [p.meta["task_type"] for p in problems] == [r["task_type"] for r in built]
    assert all(p.meta["length"] == 0 for p in problems)


def test_cli_build_then_eval(tmp_path, tiny_ckpt, one_thread):
    from rewardflow.recipes.cli import main

    out = tmp_path / "mh"
    assert main(["mathhay", "build", "--out", str(out), "--lengths", "0,1k", "--per-type", "2", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 16 and set(manifest["qc_rejected_drafts"]) == set(TASK_TYPES)
    assert len((out / "mathhay_1k.jsonl").read_text().splitlines()) == 8
    assert main(["mathhay", "build", "--out", str(out), "--types", "sssd,easy", "--quiet"]) == 2
    ev = tmp_path / "ev"
    assert main(["eval", "--model", str(tiny_ckpt), "--data", str(out / "mathhay.jsonl"), "--n", "1", "--temperature", "0",
                 "--max-new-tokens", "2", "--out", str(ev), "--quiet"]) == 0
    res = json.loads((ev / "results.json").read_text())
    assert set(res["by_task_type"]) == set(TASK_TYPES) and set(res["by_length"]) == {"0", "1024"}
    assert sum(g["n"] for g in res["by_task_type_x_length"].values()) == 16
    assert res["greedy"] == res["pass@1"]  # one sample at temperature 0 is the greedy decode, reused


def test_real_tokenizer_counts_when_installed():
    from rewardflow.recipes.mathhay_cli import _counter

    try:
        count, what = _counter("smollm2-135m-instruct")
    except (ImportError, OSError, ValueError) as e:
        pytest.skip(f"SmolLM2-135M-Instruct not installed: {e}")
    row, _ = make_row(0, "mssd", 1, 1024, "middle", count)
    assert row["context_tokens"] == count(row["context"]) <= 1024 and "smollm2" in what


def _tuples(expr):
    """A row's expression back from JSON (lists) to the generator's tuples."""
    if expr[0] == "fact":
        return tuple(expr)
    if expr[0] in ("+", "-"):
        return (expr[0], _tuples(expr[1]), _tuples(expr[2]))
    return (expr[0], [_tuples(e) for e in expr[1]])


def _leaves(expr):
    if expr[0] == "fact":
        yield expr
    else:
        for e in (expr[1:] if expr[0] in ("+", "-") else expr[1]):
            yield from _leaves(e)


def test_report_merges_results_into_a_table_and_plot(tmp_path):
    from rewardflow.recipes.cli import main

    def results(name, groups):
        path = tmp_path / name
        path.write_text(json.dumps({"by_task_type_x_length": groups}))
        return str(path)

    g = lambda acc, n, lo, hi: {"greedy": acc, "greedy_ci": [lo, hi], "n": n}  # noqa: E731
    a = results("a.json", {"sssd@0": g(0.5, 4, 0.15, 0.85), "msmd@0": g(0.0, 4, 2.7e-17, 0.49)})  # Wilson at 0 of 4: a bound 1e-17 above the point
    b = results("b.json", {"sssd@2048": g(0.25, 4, 0.05, 0.7)})
    out = tmp_path / "rep"
    assert main(["mathhay", "report", "--out", str(out), "--results", f"m={a}", f"m={b}"]) == 0
    table = (out / "mathhay_table.md").read_text().splitlines()
    assert table[0] == "| model | task type | relevant docs only | 2048 tokens |"
    assert "| m | sssd | 0.50 [0.15, 0.85] (n=4) | 0.25 [0.05, 0.70] (n=4) |" in table
    assert "| m | msmd | 0.00 [0.00, 0.49] (n=4) | - |" in table
    pooled = next(row for row in table if row.startswith("| m | all |")).split(" | ")
    assert pooled[2].startswith("0.25 [") and pooled[2].endswith("(n=8)")  # (0.5 * 4 + 0 * 4) / 8 correct at length 0
    assert pooled[3].startswith("0.25 [") and pooled[3].endswith("(n=4) |")  # 0.25 * 4 / 4 at 2048
    assert table.index("| m | sssd | 0.50 [0.15, 0.85] (n=4) | 0.25 [0.05, 0.70] (n=4) |") < table.index(" | ".join(pooled))
    assert (out / "mathhay_accuracy.png").stat().st_size > 1000
    assert main(["mathhay", "report", "--out", str(out), "--results", f"m={a}", f"m={a}"]) == 2  # the same points twice
