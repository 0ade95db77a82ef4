"""Published reward-model formats (rewards/published.py), each on a tiny random model of its architecture built
from a config: the scorer's step scores equal a reference written the way the model card reads the model, one
solution at a time (so batching, padding and step positions are checked too); the mathematics by hand."""
import json
import math

import pytest
import torch

from rewardflow.data.problem import Problem
from rewardflow.policy.tiny import build_char_tokenizer
from rewardflow.rewards.published import (MathShepherdPRM, QwenPRM, RLHFlowPRM, SeqClsORM, plus_vs_minus,
                                          positive_class_prob, token_at_char)
from rewardflow.rewards.registry import load_scorer

Q = "What is 3 + 4?"
SOLS = [["3 + 4 = 7", "The answer is 7"], ["3 + 4 = 8", "8 - 1 = 7", "The answer is 7"]]
PROBS = [Problem(id=str(i), prompt=Q, answer="7", task="t", meta={}) for i in range(len(SOLS))]

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3 = ("<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=512)


# ---------------------------------------------------------------- the mathematics, by hand


def test_positive_class_prob_by_hand():
    # logits [0, ln 3]: softmax = [1, 3] / 4, so the positive class has 3/4
    assert positive_class_prob(torch.tensor([[0.0, math.log(3.0)]])).tolist() == pytest.approx([0.75], abs=1e-7)


def test_plus_vs_minus_ignores_every_other_token():
    # '+' logit 1, '-' logit -1: P(+) = e^1 / (e^1 + e^-1) = sigmoid(2) = 0.880797; token 3's logit 9 would take
    # nearly all of a full-vocabulary softmax, but only the two candidates count
    logits = torch.tensor([[5.0, 1.0, -1.0, 9.0]])
    assert plus_vs_minus(logits, plus_id=1, minus_id=2).item() == pytest.approx(0.880797, abs=1e-6)
    assert plus_vs_minus(logits, plus_id=2, minus_id=1).item() == pytest.approx(1 - 0.880797, abs=1e-6)


def test_token_at_char():
    offsets = [(0, 1), (1, 3), (3, 4)]
    assert [token_at_char(offsets, c) for c in (0, 1, 2, 3)] == [0, 1, 1, 2]
    with pytest.raises(ValueError):
        token_at_char(offsets, 4)


# ---------------------------------------------------------------- tiny checkpoints with the exact conventions


def _tokenizer(added=(), special=(), template=None):
    tok = build_char_tokenizer()
    if special:
        tok.add_tokens(list(special), special_tokens=True)
    if added:
        tok.add_tokens(list(added))
    tok.chat_template = template
    return tok


def _save(model, tok, path, head):
    """Random init is tiny (std 0.02): widen the output layer so scores differ from token to token."""
    torch.manual_seed(0)
    with torch.no_grad():
        getattr(model, head).weight.normal_(0.0, 0.2)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    from transformers import Qwen2Config, Qwen2ForTokenClassification

    tok = _tokenizer(special=["<|im_start|>", "<|im_end|>", "<extra_0>"], template=CHATML)
    model = Qwen2ForTokenClassification(Qwen2Config(vocab_size=len(tok), num_labels=2, **SMALL))
    return _save(model, tok, tmp_path_factory.mktemp("qwen_prm"), "score")


@pytest.fixture(scope="module")
def shepherd_dir(tmp_path_factory):
    from transformers import MistralConfig, MistralForCausalLM

    tok = _tokenizer(added=["ки"])
    model = MistralForCausalLM(MistralConfig(vocab_size=len(tok), **SMALL))
    return _save(model, tok, tmp_path_factory.mktemp("shepherd"), "lm_head")


@pytest.fixture(scope="module")
def rlhflow_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer(special=["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], template=LLAMA3)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), **SMALL))
    return _save(model, tok, tmp_path_factory.mktemp("rlhflow"), "lm_head")


@pytest.fixture(scope="module")
def seqcls_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from rewardflow.policy.tiny import CHAT_TEMPLATE

    tok = _tokenizer(template=CHAT_TEMPLATE)  # its assistant turn ends with <eos>, which is also the pad below
    model = LlamaForSequenceClassification(LlamaConfig(vocab_size=len(tok), num_labels=1, pad_token_id=tok.eos_token_id, **SMALL))
    return _save(model, tok, tmp_path_factory.mktemp("seqcls"), "score")


def _next_door(scores: torch.Tensor, mask: torch.Tensor) -> list[float]:
    """scores [L] of every position, mask [L] the positions read -> how far reading one token early or late
    would move each score; the tests require some of these to be large, so an off-by-one cannot pass."""
    pos = mask.nonzero().flatten()
    late = pos[pos + 1 < len(scores)]  # the last token has no right-hand neighbour
    return (scores[pos] - scores[pos - 1]).abs().tolist() + (scores[late] - scores[late + 1]).abs().tolist()


# ---------------------------------------------------------------- each format against its model card's reading


def test_qwen_prm_reads_positive_class_at_each_separator(qwen_dir):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(qwen_dir), AutoModelForTokenClassification.from_pretrained(qwen_dir).eval()
    sep = tok.convert_tokens_to_ids("<extra_0>")
    expected, moves = [], []
    for steps in SOLS:  # the model card: steps joined by <extra_0> (one after the last step too), chat-templated
        msgs = [{"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
                {"role": "user", "content": Q}, {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"}]
        ids = torch.tensor([tok.encode(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)])
        with torch.no_grad():
            probs = torch.softmax(model(input_ids=ids).logits, dim=-1)[0, :, 1]  # [L]
        moves += _next_door(probs, ids[0] == sep)
        expected.append(probs[ids[0] == sep].tolist())
    assert max(moves) > 0.02, moves
    got = load_scorer(f"qwen-prm:{qwen_dir}").score(PROBS, SOLS)
    assert isinstance(load_scorer(f"qwen-prm:{qwen_dir}"), QwenPRM)
    for g, e in zip(got, expected):
        assert g.steps == pytest.approx(e, abs=1e-5) and g.outcome == pytest.approx(e[-1], abs=1e-5)


def test_qwen_prm_upstream_head_needs_trust_remote_code(qwen_dir, tmp_path):
    import shutil

    shutil.copytree(qwen_dir, tmp_path / "q")
    cfg = json.loads((tmp_path / "q" / "config.json").read_text())
    (tmp_path / "q" / "config.json").write_text(json.dumps({**cfg, "architectures": ["Qwen2ForProcessRewardModel"]}))
    with pytest.raises(ValueError, match="remote code"):
        QwenPRM.load(tmp_path / "q")


def test_math_shepherd_reads_plus_vs_minus_at_each_tag(shepherd_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(shepherd_dir), AutoModelForCausalLM.from_pretrained(shepherd_dir).eval()
    plus, minus = tok.encode("+ -", add_special_tokens=False)[0], tok.encode("+ -", add_special_tokens=False)[-1]
    tag = tok.encode("ки", add_special_tokens=False)[-1]
    expected, moves = [], []
    for steps in SOLS:  # the model card: f"{question} {output}", output = "Step 1: ... ки\nStep 2: ... ки"
        output = "\n".join(f"Step {k + 1}: {s} ки" for k, s in enumerate(steps))
        ids = torch.tensor([tok.encode(f"{Q} {output}")])
        with torch.no_grad():
            scores = model(ids).logits[:, :, [plus, minus]].softmax(dim=-1)[0, :, 0]  # [L]
        moves += _next_door(scores, ids[0] == tag)
        expected.append(scores[ids[0] == tag].tolist())
    assert max(moves) > 0.02, moves
    got = load_scorer(f"math-shepherd:{shepherd_dir}").score(PROBS, SOLS)
    for g, e in zip(got, expected):
        assert g.steps == pytest.approx(e, abs=1e-5)
    # steps already numbered "Step k:" are not numbered twice
    numbered = [[f"Step {k + 1}: {s}" for k, s in enumerate(steps)] for steps in SOLS]
    again = MathShepherdPRM.load(shepherd_dir).score(PROBS, numbered)
    assert [x for s in again for x in s.steps] == pytest.approx([x for e in expected for x in e], abs=1e-5)


def test_rlhflow_prm_reads_plus_at_each_assistant_turn(rlhflow_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(rlhflow_dir), AutoModelForCausalLM.from_pretrained(rlhflow_dir).eval()
    plus, minus = tok.encode("+", add_special_tokens=False)[-1], tok.encode("-", add_special_tokens=False)[-1]
    expected, moves = [], []
    for steps in SOLS:  # RLHFlow's evaluation: one growing chat, a forward per step, the logits at position -3
        chat, scores = [], []
        for k, step in enumerate(steps):
            chat += [{"role": "user", "content": f"{Q} {step}" if k == 0 else step}, {"role": "assistant", "content": "+"}]
            ids = torch.tensor([tok.encode(tok.apply_chat_template(chat, tokenize=False), add_special_tokens=False)])
            assert tok.convert_ids_to_tokens(ids[0, -2:].tolist()) == ["+", "<|eot_id|>"]  # so -3 predicts the "+"
            with torch.no_grad():
                every = model(ids).logits[0, :, [plus, minus]].softmax(dim=-1)[:, 0]  # [L]
            moves += _next_door(every, torch.arange(len(every)) == len(every) - 3)
            scores.append(every[-3].item())
        expected.append(scores)
    assert max(moves) > 0.02, moves
    got = load_scorer(f"rlhflow-prm:{rlhflow_dir}").score(PROBS, SOLS)  # one forward for all steps
    for g, e in zip(got, expected):
        assert g.steps == pytest.approx(e, abs=1e-5)
    assert isinstance(load_scorer(f"rlhflow-prm:{rlhflow_dir}"), RLHFlowPRM)


def test_seqcls_orm_reads_the_logit_at_the_last_token_even_when_pad_is_eos(seqcls_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(seqcls_dir), AutoModelForSequenceClassification.from_pretrained(seqcls_dir).eval()
    rows = []
    for steps in SOLS:
        chat = [{"role": "user", "content": Q}, {"role": "assistant", "content": "\n".join(steps)}]
        rows.append(tok.encode(tok.apply_chat_template(chat, tokenize=False), add_special_tokens=False))
    assert all(r[-1] == tok.eos_token_id for r in rows)  # each row ends with the token the config calls pad
    model.config.pad_token_id = None  # one row at a time: transformers then pools the very last token
    with torch.no_grad():
        expected = [model(input_ids=torch.tensor([r])).logits[0, 0].item() for r in rows]
        # what padding with the configured pad (= eos) would pool: the token before the closing eos
        model.config.pad_token_id = tok.eos_token_id
        naive = [model(input_ids=torch.tensor([r])).logits[0, 0].item() for r in rows]
    assert expected != pytest.approx(naive, abs=1e-3)  # the pitfall is real on this model
    got = load_scorer(f"seqcls-orm:{seqcls_dir}").score(PROBS, SOLS)
    assert [g.outcome for g in got] == pytest.approx(expected, abs=1e-5)
    assert all(g.steps == [] for g in got)


def test_a_scorer_json_names_the_format(shepherd_dir, tmp_path):
    import shutil

    shutil.copytree(shepherd_dir, tmp_path / "m")
    (tmp_path / "m" / "scorer.json").write_text(json.dumps({"kind": "math-shepherd"}))
    scorer = load_scorer(str(tmp_path / "m"))
    assert isinstance(scorer, MathShepherdPRM)
    out = scorer.score(PROBS[:1], [[]])  # no steps: one empty step is scored, reported as the outcome only
    assert out[0].steps == [] and 0.0 < out[0].outcome < 1.0
    assert scorer.flops_spent > 0


def test_batching_does_not_change_scores(rlhflow_dir, qwen_dir):
    for cls, path in ((RLHFlowPRM, rlhflow_dir), (QwenPRM, qwen_dir)):
        scorer = cls.load(path)
        together = scorer.score(PROBS, SOLS)
        scorer.batch_size = 1
        alone = scorer.score(PROBS, SOLS)
        assert [x for s in together for x in s.steps] == pytest.approx([x for s in alone for x in s.steps], abs=1e-5)


def test_a_hub_name_without_a_hub_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network either way: the message, not a download, is under test
    with pytest.raises(ValueError, match="not a local directory, and the hub could not provide it"):
        load_scorer("no-such-org/no-such-reward-model")
    with pytest.raises(ValueError, match="not one of verifier"):
        load_scorer("a/b/c")  # not an org/name: the usual missing-directory error


def test_rm_score_reads_a_published_format(shepherd_dir, tmp_path):
    from rewardflow.recipes.cli import main

    rows = [{"id": str(i), "prompt": Q, "steps": steps} for i, steps in enumerate(SOLS)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = f"math-shepherd:{shepherd_dir}"
    assert main(["rm", "score", "--model", spec, "--input", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "s.jsonl"), "--quiet"]) == 0
    written = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    direct = MathShepherdPRM.load(shepherd_dir).score(PROBS, SOLS)
    assert [w["step_scores"] for w in written] == [pytest.approx(d.steps, abs=1e-6) for d in direct]
