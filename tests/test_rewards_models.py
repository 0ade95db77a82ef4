"""Reward-model losses (hand-checked), the RewardModel scorer (step positions, causality, save/load) and
ORM / PRM training on toy rows where the right answer is known."""
import json
import math

import pytest
import torch

from rewardflow.algos.rm import bradley_terry_loss, pointwise_bce_loss, step_bce_loss
from rewardflow.data.problem import Problem
from rewardflow.rewards import aggregate
from rewardflow.rewards.models import RewardModel
from rewardflow.rewards.registry import load_scorer
from rewardflow.train.rm import RMTrainConfig, bt_pairs, check_rows, prmbench_train_rows, split_by_prompt, train_reward_model


def _sig(x):
    return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------- losses, by hand


def test_bradley_terry_loss_by_hand():
    # margins 1 - 0 = 1 and 0 - 2 = -2: loss = -(log s(1) + log s(-2)) / 2 = (0.31326 + 2.12693) / 2 = 1.22009
    loss, stats = bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))
    expected = -(math.log(_sig(1.0)) + math.log(_sig(-2.0))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.22009, abs=1e-5)
    assert stats["rm/acc"] == 0.5
    # swapping chosen and rejected changes the loss: the sign matters
    swapped, _ = bradley_terry_loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]))
    assert swapped.item() == pytest.approx(-(math.log(_sig(-1.0)) + math.log(_sig(2.0))) / 2, abs=1e-6)


def test_pointwise_bce_by_hand():
    # z = [2, -1], l = [1, 0]: -(log s(2) + log(1 - s(-1))) / 2 = -(log s(2) + log s(1)) / 2 = (0.12693 + 0.31326) / 2
    loss, stats = pointwise_bce_loss(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx((0.126928 + 0.313262) / 2, abs=1e-5)
    assert stats["rm/acc"] == 1.0
    # a soft label 0.25 on z = 0: -(0.25 log 0.5 + 0.75 log 0.5) = log 2
    soft, _ = pointwise_bce_loss(torch.tensor([0.0]), torch.tensor([0.25]))
    assert soft.item() == pytest.approx(math.log(2), abs=1e-6)


def test_step_bce_ignores_padded_steps():
    logits = torch.tensor([[0.0, 3.0], [1.0, 99.0]])
    labels = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    mask = torch.tensor([[True, True], [True, False]])
    # three real steps: log 2, -log s(3) = 0.048587, -log(1 - s(1)) = 1.313262; mean = (0.693147 + 0.048587 + 1.313262) / 3
    loss, stats = step_bce_loss(logits, labels, mask)
    assert loss.item() == pytest.approx((0.693147 + 0.048587 + 1.313262) / 3, abs=1e-5)
    assert stats["rm/steps"] == 3
    assert stats["rm/step_acc"] == pytest.approx(1 / 3)  # only the 3.0 logit is on the right side of its label


# ---------------------------------------------------------------- the scorer on a tiny causal LM


def test_step_positions_are_the_last_token_of_each_step(tiny_ckpt):
    rm = RewardModel.new(tiny_ckpt, "prm")
    steps = ["3 + 4 = 7", "7 + 1 = 8", "Answer: 8"]
    enc = rm.encode(["What is 3 + 4 + 1?"], [steps])
    ids = enc.input_ids[0].tolist()
    decoded = [rm.tokenizer.decode(ids[: p + 1]) for p in enc.step_pos[0].tolist()]
    for k, text in enumerate(decoded):
        assert text.endswith(steps[k]), (k, text)
    assert enc.last[0].item() == enc.step_pos[0, -1].item()


def test_prm_step_scores_do_not_see_later_steps(tiny_ckpt):
    rm = RewardModel.new(tiny_ckpt, "prm")
    # a non-zero head so scores vary, seeded: with some draws the two second-step scores differ by only ~1e-4
    with torch.no_grad():
        rm.head.weight.copy_(torch.randn(rm.head.weight.shape, generator=torch.Generator().manual_seed(0)))
    p = Problem(id="a", prompt="What is 3 + 4?", answer="7", task="t", meta={})
    a, b = rm.score([p, p], [["3 + 4 = 7", "Answer: 7"], ["3 + 4 = 7", "Answer: 9"]])
    assert a.steps[0] == pytest.approx(b.steps[0], abs=1e-6)  # same first step, different second: same first score
    assert a.steps[1] != pytest.approx(b.steps[1], abs=1e-4)


def _char_wordpiece():
    """A WordPiece tokenizer with one token per character (plus [CLS]/[SEP]), as BERT-style encoders use."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *list("abcdefghijklmnopqrstuvwxyz0123456789+=?:.")]
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split("", behavior="isolated")])  # one char per token
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
    return fast, len(vocab)


def test_minilm_like_encoder_gets_a_causal_mask_for_prm(tmp_path):
    """An encoder backbone (a tiny random BERT with a WordPiece vocabulary) as PRM: causal, as the PRM needs."""
    from transformers import BertConfig, BertModel

    fast, V = _char_wordpiece()
    BertModel(BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(tmp_path / "bert")
    fast.save_pretrained(tmp_path / "bert")

    prm = RewardModel.new(tmp_path / "bert", "prm")
    orm = RewardModel.new(tmp_path / "bert", "orm")
    assert prm.causal and prm.backbone.config.is_decoder
    assert not orm.causal  # an outcome score may read the whole solution both ways
    torch.nn.init.normal_(prm.head.weight, std=1.0)
    p = Problem(id="a", prompt="what is 3+4?", answer="7", task="t", meta={})
    a, b = prm.score([p, p], [["3+4=7", "answer: 7"], ["3+4=7", "answer: 9"]])
    assert a.steps[0] == pytest.approx(b.steps[0], abs=1e-6)
    enc = prm.encode(["what is 3+4?"], [["3+4=7", "answer: 7"]])
    assert [fast.convert_ids_to_tokens(enc.input_ids[0, p].item()) for p in enc.step_pos[0]] == ["7", "7"]


def test_an_encoder_that_ignores_is_decoder_is_refused_as_prm(tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    fast, V = _char_wordpiece()
    DistilBertModel(DistilBertConfig(vocab_size=V, dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=64)).save_pretrained(tmp_path / "d")
    fast.save_pretrained(tmp_path / "d")
    with pytest.raises(ValueError, match="ignores is_decoder"):
        RewardModel.new(tmp_path / "d", "prm")
    assert not RewardModel.new(tmp_path / "d", "orm").causal  # an ORM reads the whole solution: any encoder will do


def test_steps_past_max_length_are_marked_and_not_trained_on(tiny_ckpt):
    rm = RewardModel.new(tiny_ckpt, "prm", max_length=40)
    steps = ["1 + 2 = 3", "3 + 4 = 7", "7 + 5 = 12", "12 + 6 = 18", "Answer: 18"]
    enc = rm.encode(["What is 1 + 2 + 4 + 5 + 6?"], [steps])
    cut = enc.step_cut[0].tolist()
    assert enc.input_ids.shape[1] == 40 and any(cut) and not cut[0]
    assert cut == sorted(cut)  # once a step is cut, every later one is too
    first_cut = cut.index(True)
    assert all(p == enc.last[0].item() for p in enc.step_pos[0, first_cut:].tolist())  # they read the last kept token
    whole = RewardModel.new(tiny_ckpt, "prm").encode(["What is 1 + 2 + 4 + 5 + 6?"], [steps])
    assert not whole.step_cut.any()


def _random_head(rm):
    torch.manual_seed(0)
    torch.nn.init.normal_(rm.head.weight, std=1.0)  # a fresh head scores 0.5 everywhere: make scores differ
    return rm


def test_a_long_solution_is_scored_in_windows_of_genuine_causal_scores(tiny_ckpt):
    question = "What is 1 + 2 + 4 + 5 + 6 + 7 + 8 + 9?"
    steps = ["1 + 2 = 3", "3 + 4 = 7", "7 + 5 = 12", "12 + 6 = 18", "18 + 7 = 25", "25 + 8 = 33", "33 + 9 = 42", "Answer: 42"]
    rm = _random_head(RewardModel.new(tiny_ckpt, "prm", max_length=80))  # the templated question is ~50 tokens, a step ~11
    first_cut = rm.encode([question], [steps]).step_cut[0].tolist().index(True)
    assert 2 <= first_cut < len(steps) - 2  # several windows, each with room for context
    got = rm.score([Problem(id="q", prompt=question, answer=None, task="t")], [steps])[0].steps
    assert len(got) == len(steps)

    def alone(sub):  # the score of sub's last step, read with sub as the whole solution
        enc = rm.encode([question], [sub])
        return None if enc.step_cut.any() else rm.score([Problem(id="q", prompt=question, answer=None, task="t")], [sub])[0].steps[-1]

    for k in range(len(steps)):
        # each step's score is that of a window that fits: the question, some earlier steps as context, then step k
        candidates = [alone(steps[s : k + 1]) for s in range(k + 1)]
        assert any(c is not None and c == pytest.approx(got[k], abs=1e-5) for c in candidates), k
        if k < first_cut:
            assert got[k] == pytest.approx(candidates[0], abs=1e-5)  # the first window is read as before
    assert len(set(round(x, 6) for x in got[first_cut:])) > 1  # not the old copies of the last kept token


def test_scores_do_not_depend_on_the_batch_or_its_order(tiny_ckpt):
    rm = _random_head(RewardModel.new(tiny_ckpt, "prm"))
    rm.batch_size = 2  # several batches, sorted by length inside score()
    probs = [Problem(id=str(i), prompt=f"What is {i} + {i}?", answer=None, task="t") for i in range(5)]
    sols = [[f"{i} + {i} = {2 * i}"] + ["so it is"] * i + [f"Answer: {2 * i}"] for i in range(5)]
    together = rm.score(probs[::-1], sols[::-1])[::-1]  # longest first: the sort must put each back in place
    for p, sol, got in zip(probs, sols, together):
        assert got.steps == pytest.approx(rm.score([p], [sol])[0].steps, abs=1e-5) and len(got.steps) == len(sol)


def test_windows_end_when_even_the_question_does_not_fit(tiny_ckpt):
    rm = _random_head(RewardModel.new(tiny_ckpt, "prm", max_length=8))
    got = rm.score([Problem(id="q", prompt="What is 1 + 2 + 4 + 5 + 6 + 7 + 8 + 9?", answer=None, task="t")], [["1 + 2 = 3", "Answer: 3"]])[0]
    assert len(got.steps) == 2 and all(0 < x < 1 for x in got.steps)


def test_a_bf16_checkpoint_loads_in_fp32(tiny_ckpt, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(tiny_ckpt, dtype=torch.bfloat16).save_pretrained(tmp_path / "bf16")
    AutoTokenizer.from_pretrained(tiny_ckpt).save_pretrained(tmp_path / "bf16")
    rm = RewardModel.new(tmp_path / "bf16", "orm")
    p = Problem(id="a", prompt="What is 3 + 4?", answer="7", task="t", meta={})
    assert rm.score([p], [["Answer: 7"]])[0].outcome == pytest.approx(0.5)  # zero head: sigmoid(0), and no dtype clash
    assert rm.score([p], [[]])[0].steps == []


# ---------------------------------------------------------------- training on toy rows with a known rule


def _toy_rows(n_prompts=24):
    """Solutions whose steps are right ('= 7') or wrong ('= 9'); a step's label is 1 until the first wrong step."""
    rows = []
    for i in range(n_prompts):
        for variant in range(4):
            marks = [(variant >> k) & 1 for k in range(2)]  # 0: right step, 1: wrong step
            steps = [f"{i % 5} + 2 = {'9' if m else '7'}" for m in marks] + ["Answer: done"]
            labels, ok = [], 1.0
            for m in marks + [0]:
                ok = 0.0 if m else ok
                labels.append(ok)
            rows.append({"id": f"{i}-{variant}", "prompt": f"Question {i}: add", "steps": steps, "labels": labels, "correct": labels[-1] > 0.5})
    return rows


def test_prm_learns_step_labels_and_round_trips(tiny_ckpt, tmp_path):
    rows = _toy_rows()
    cfg = RMTrainConfig(kind="prm", epochs=20, lr=5e-3, batch_size=16, seed=0)
    rm, history = train_reward_model(tiny_ckpt, rows, tmp_path / "prm", cfg)
    assert history[-1]["val/step_acc"] >= 0.9, history
    assert history[-1]["val/loss"] < history[0]["train/loss"]
    back = load_scorer(str(tmp_path / "prm"))
    p = Problem(id="x", prompt="Question 3: add", answer=None, task="t", meta={})
    sols = [["3 + 2 = 7", "3 + 2 = 7", "Answer: done"], ["3 + 2 = 9", "3 + 2 = 7", "Answer: done"]]
    first, second = rm.score([p, p], sols), back.score([p, p], sols)
    assert [x for s in first for x in s.steps] == pytest.approx([x for s in second for x in s.steps], abs=1e-6)
    assert aggregate(first[0], "min") > 0.5 > aggregate(first[1], "min")
    assert json.loads((tmp_path / "prm" / "scorer.json").read_text())["kind"] == "prm"
    assert len((tmp_path / "prm" / "metrics.jsonl").read_text().splitlines()) == 20


def test_orm_bradley_terry_ranks_correct_above_wrong(tiny_ckpt, tmp_path):
    rows = _toy_rows()
    cfg = RMTrainConfig(kind="orm", loss="bt", epochs=5, lr=3e-3, batch_size=8, seed=0)
    _, history = train_reward_model(tiny_ckpt, rows, tmp_path / "orm", cfg)
    assert history[-1]["val/acc"] >= 0.9, history


def test_bt_pairs_and_splits():
    rows = _toy_rows(4)
    pairs = bt_pairs(rows, cap=8, seed=0)
    assert len(pairs) == 4 * 3  # per prompt one correct (both steps right) x three wrong
    assert all(c["correct"] and not w["correct"] and c["prompt"] == w["prompt"] for c, w in pairs)
    train, val = split_by_prompt(_toy_rows(20), 0.1, seed=0)
    assert {r["prompt"] for r in train}.isdisjoint({r["prompt"] for r in val}) and len(val) == 2 * 4


def test_bad_rows_are_named():
    with pytest.raises(ValueError, match="row 2 \\(id b\\): 1 labels for 2 steps"):
        check_rows([{"id": "a", "prompt": "p", "steps": ["s"], "labels": [1]}, {"id": "b", "prompt": "p", "steps": ["s", "t"], "labels": [1]}], "prm")
    with pytest.raises(ValueError, match="missing correct"):
        check_rows([{"prompt": "p", "steps": ["s"]}], "orm")
    with pytest.raises(ValueError, match="loss"):
        RMTrainConfig(kind="prm", loss="bt").validate()


def test_prmbench_train_rows(shared_data):
    rows = prmbench_train_rows(shared_data / "prmbench")
    modified = [r for r in rows if not r["id"].endswith(":original")]
    originals = [r for r in rows if r["id"].endswith(":original")]
    # the eight train files hold 3,203 rows (`cat *_train_*.jsonl | grep -c .`); 12 name error steps past their end
    assert len(modified) == 3203 - 12
    assert all(len(r["labels"]) == len(r["steps"]) for r in rows)
    assert all(0.0 in r["labels"] for r in modified) and all(set(r["labels"]) == {1.0} for r in originals)
    first = next(r for r in modified if r["id"] == "prm_train_p1_0:circular")
    assert first["labels"] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # error_steps [2, 3, 4] of six steps: unsound from step 2 on


def test_prmbench_variants_of_one_question_stay_on_one_side(shared_data):
    rows = prmbench_train_rows(shared_data / "prmbench")
    train, val = split_by_prompt(rows, 0.1, seed=0)
    assert val and {r["group"] for r in train}.isdisjoint({r["group"] for r in val})


def test_best_weights_stops_after_patience_and_keeps_the_lowest_loss():
    from rewardflow.train.rm import BestWeights

    net = torch.nn.Linear(1, 1)
    best = BestWeights(patience=2)
    stops = []
    for step, (loss, w) in enumerate([(1.0, 1.0), (0.8, 2.0), (0.9, 3.0), (0.85, 4.0)], start=1):
        with torch.no_grad():
            net.weight.fill_(w)
        stops.append(best.update(net, loss, step))
    assert stops == [False, False, False, True]  # two validations in a row without a loss below 0.8
    assert best.step == 2 and best.loss == 0.8 and best.state["weight"].item() == 2.0  # a copy, not the live tensor
    assert not BestWeights(patience=0).update(net, 1.0, 1)  # off: never stops


def test_early_stopping_saves_the_weights_of_the_lowest_held_out_loss(tiny_ckpt, tmp_path):
    from rewardflow.train.rm import evaluate

    rows = [{"prompt": f"What is {i} + {i % 3}?", "steps": [f"{i} + {i % 3} = {i + i % 3}", f"Answer: {i + i % 3 + i % 2}"],
             "labels": [1.0, float(i % 2 == 0)]} for i in range(40)]
    cfg = RMTrainConfig(kind="prm", epochs=6, lr=3e-2, batch_size=4, val_frac=0.25, eval_every=3, patience=2, seed=0)
    rm, history = train_reward_model(tiny_ckpt, rows, tmp_path / "prm", cfg)
    lines, summary = history[:-1], history[-1]
    assert summary["best_val_loss"] == min(h["val/loss"] for h in lines)
    best_at = next(i for i, h in enumerate(lines) if h["step"] == summary["best_step"])
    assert lines[-1]["step"] < 6 * 8  # stopped early (30 training rows / 4 = 8 steps per epoch, 6 epochs)
    assert len(lines) - 1 - best_at == 2  # two validations after the best one, so the last weights are not the best
    val = split_by_prompt(rows, cfg.val_frac, cfg.seed)[1]
    saved = RewardModel.load(tmp_path / "prm")
    assert evaluate(saved, val, cfg)["val/loss"] == pytest.approx(summary["best_val_loss"], abs=1e-5)  # the best, not the last


def test_dropout_option_replaces_every_dropout_rate_of_the_backbone(tiny_ckpt):
    assert RewardModel.new(tiny_ckpt, "prm").backbone.config.attention_dropout == 0.0
    assert RewardModel.new(tiny_ckpt, "prm", dropout=0.25).backbone.config.attention_dropout == 0.25


def test_bf16_reward_model_training_learns(tiny_ckpt, tmp_path):
    # under one autocast context with its weight cache, every forward read the first step's weights: loss flat
    rows = [{"prompt": f"Q{i}", "steps": ["1 + 1 = 2", "Answer: 2"], "labels": [1.0, 0.0]} for i in range(16)]
    cfg = RMTrainConfig(kind="prm", epochs=4, lr=1e-2, batch_size=8, val_frac=0.0, dtype="bfloat16")
    _, history = train_reward_model(tiny_ckpt, rows, tmp_path / "prm", cfg)
    assert history[-1]["train/loss"] < 0.8 * history[0]["train/loss"], [h["train/loss"] for h in history]
