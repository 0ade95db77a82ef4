"""Implicit PRM (Yuan et al. 2024) and PRIME's online update (Cui et al. 2025): the math by hand, then the Scorer
on a tiny model: step rewards sum to the outcome, exactly 0 at init, outcome-label updates separate correct from
wrong solutions, save/load round-trips.

Hand example (beta = .5), two sequences of T = 3 tokens, the second padded after 2 tokens:
  logp     = [[-1.0, -2.0, -0.5], [-3.0, -1.0, -9.0]]
  ref_logp = [[-2.0, -1.0, -1.5], [-1.0, -1.0, -4.0]]
  mask     = [[1, 1, 1], [1, 1, 0]]
  logp - ref = [[1, -1, 1], [-2, 0, (-5 masked)]]  ->  q = .5 * that = [[.5, -.5, .5], [-1, 0, 0]]
  r(y) = sum_t q_t = [.5, -1]
"""
import functools
import json
import math

import pytest
import torch

from rewardflow.algos.implicit_prm import implicit_outcome_ce_loss, implicit_step_rewards, implicit_token_rewards
from rewardflow.data.problem import Problem
from rewardflow.rewards import load_scorer
from rewardflow.rewards.implicit import ImplicitPRM
from rewardflow.train.rm import train_implicit_prm

import conftest
from conftest import softplus

ATOL = 1e-9  # exact float64 inputs: tighter than the algos/ tests' 1e-6
close = functools.partial(conftest.close, atol=ATOL)
D = torch.float64
LOGP = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -1.0, -9.0]], dtype=D)
REF = torch.tensor([[-2.0, -1.0, -1.5], [-1.0, -1.0, -4.0]], dtype=D)
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=D)


def test_token_rewards_by_hand():
    q = implicit_token_rewards(LOGP, REF, MASK, beta=0.5)
    close(q, [[0.5, -0.5, 0.5], [-1.0, 0.0, 0.0]])
    # the sign is policy minus reference: swapping them flips every reward
    close(implicit_token_rewards(REF, LOGP, MASK, beta=0.5), [[-0.5, 0.5, -0.5], [1.0, 0.0, 0.0]])


def test_step_rewards_by_hand():
    # row 0: steps end at tokens 1 and 3 -> [.5], [-.5 + .5] = [.5, 0]
    # row 1: one step ending at 2, second step padded (-1) -> [-1 + 0, 0]
    q = implicit_token_rewards(LOGP, REF, MASK, beta=0.5)
    ends = torch.tensor([[1, 3], [2, -1]])
    steps = implicit_step_rewards(q, ends)
    close(steps, [[0.5, 0.0], [-1.0, 0.0]])
    # equivalently, differences of the partial sums q_{t_k} - q_{t_{k-1}}: row 0 partial sums .5, 0, .5
    close(steps.sum(-1), q.sum(-1))


def test_outcome_ce_loss_by_hand():
    # r = [.5, -1], labels [1, 0]:
    #   row 0: -log sigmoid(.5) = log(1 + e^-.5); row 1: -log(1 - sigmoid(-1)) = -log sigmoid(1) = log(1 + e^-1)
    #   mean over N = 2
    labels = torch.tensor([1.0, 0.0], dtype=D)
    loss, stats = implicit_outcome_ce_loss(LOGP, REF, MASK, labels, beta=0.5)
    close(loss, (softplus(-0.5) + softplus(-1.0)) / 2)
    assert stats["prm/accuracy"] == pytest.approx(1.0)  # r > 0 on the correct one, r < 0 on the wrong one
    assert stats["prm/reward_mean"] == pytest.approx(-0.25)
    # normalizer: sum / 4 instead of / 2
    quarter, _ = implicit_outcome_ce_loss(LOGP, REF, MASK, labels, beta=0.5, normalizer=4)
    close(quarter, (softplus(-0.5) + softplus(-1.0)) / 4)


def test_outcome_ce_loss_fails_on_wrong_sign_or_beta():
    # labels flipped to [0, 1]: log(1 + e^.5) + log(1 + e^1), much larger than the right-way loss
    labels = torch.tensor([1.0, 0.0], dtype=D)
    right = (softplus(-0.5) + softplus(-1.0)) / 2
    close(implicit_outcome_ce_loss(LOGP, REF, MASK, 1 - labels, beta=0.5)[0], (softplus(0.5) + softplus(1.0)) / 2)
    # a swapped log-ratio (ref - policy) gives that wrong value, not the right one
    swapped = implicit_outcome_ce_loss(REF, LOGP, MASK, labels, beta=0.5)[0].item()
    assert abs(swapped - right) > 0.5
    # beta 1 doubles r to [1, -2]: log(1 + e^-1) + log(1 + e^-2), not the beta .5 value
    close(implicit_outcome_ce_loss(LOGP, REF, MASK, labels, beta=1.0)[0], (softplus(-1.0) + softplus(-2.0)) / 2)
    assert abs(implicit_outcome_ce_loss(LOGP, REF, MASK, labels, beta=1.0)[0].item() - right) > 0.1
    # the gradient pushes log pi up on the correct row and down on the wrong one
    logp = LOGP.clone().requires_grad_(True)
    implicit_outcome_ce_loss(logp, REF, MASK, labels, beta=0.5)[0].backward()
    assert (logp.grad[0] < 0).all() and (logp.grad[1, :2] > 0).all() and logp.grad[1, 2] == 0  # padding gets none


# ---------------------------------------------------------------- the Scorer on a tiny model


PROBLEMS = [Problem(str(i), f"{a} + {b} =", str(a + b), "add") for i, (a, b) in enumerate([(1, 2), (4, 4), (2, 5), (9, 3)])]
CORRECT = [[f"{p.prompt} {p.answer}", f"Answer: {p.answer}"] for p in PROBLEMS]
WRONG = [[f"{p.prompt} {int(p.answer) + 3}", f"Answer: {int(p.answer) + 3}"] for p in PROBLEMS]


def test_step_boundaries_and_init_rewards_are_zero(tiny_ckpt):
    prm = ImplicitPRM.from_pretrained(tiny_ckpt, beta=0.5)
    batch, ends = prm._encode(["q", "q"], [["ab", "c d", "e"], ["x"]])
    # char-level tokenizer: "ab\n" | "c d\n" | "e" + EOS -> ends 3, 7, 9 ; "x" + EOS -> 2
    assert ends.tolist() == [[3, 7, 9], [2, -1, -1]]
    assert batch.completion_mask.sum(-1).tolist() == [9.0, 2.0]
    scores = prm.score(PROBLEMS * 2, CORRECT + WRONG)
    assert all(s.outcome == 0.0 and s.steps == [0.0, 0.0] for s in scores)  # policy == reference: exactly 0


def test_updates_separate_correct_from_wrong_and_round_trip(tiny_ckpt, tmp_path):
    prm = ImplicitPRM.from_pretrained(tiny_ckpt, beta=0.5, lr=3e-3)
    sols, labels = CORRECT + WRONG, [1.0] * 4 + [0.0] * 4
    first = prm.update(PROBLEMS * 2, sols, labels)
    assert first["loss/implicit_ce"] == pytest.approx(math.log(2), abs=1e-6)  # r = 0 at init: CE = log 2
    for _ in range(7):
        last = prm.update(PROBLEMS * 2, sols, labels)
    assert last["loss/implicit_ce"] < 0.5 * math.log(2)
    scores = prm.score(PROBLEMS * 2, sols)
    right, wrong = [s.outcome for s in scores[:4]], [s.outcome for s in scores[4:]]
    assert min(right) > 0 > max(wrong) and min(right) - max(wrong) > 1.0, (right, wrong)
    for s in scores:  # step rewards add up to r(y)
        assert len(s.steps) == 2 and sum(s.steps) == pytest.approx(s.outcome, abs=1e-5)
    # the wrong answer's step carries the blame: its last step scores below the correct one's
    assert all(w.steps[1] < c.steps[1] for c, w in zip(scores[:4], scores[4:]))

    saved = prm.save(tmp_path / "prm")
    assert json.loads((saved / "scorer.json").read_text()) == {"kind": "implicit_prm", "beta": 0.5, "lr": 3e-3}
    again = load_scorer(str(saved)).score(PROBLEMS * 2, sols)
    assert [(s.steps, s.outcome) for s in again] == [(s.steps, s.outcome) for s in scores]


def test_train_implicit_prm_from_label_rows(tiny_ckpt, tmp_path):
    rows = [{"prompt": p.prompt, "steps": s, "correct": c, "labels": [0.0, 0.0]}
            for p, s, c in zip(PROBLEMS * 2, CORRECT + WRONG, [True] * 4 + [False] * 4)]
    ticks = []
    prm = train_implicit_prm(tiny_ckpt, rows, tmp_path / "out", beta=0.5, epochs=4, lr=3e-3, batch_size=4,
                             progress=lambda n, **f: ticks.append(n))
    assert sum(ticks) == 4 * len(rows) and (tmp_path / "out" / "scorer.json").is_file()
    assert not list(tmp_path.glob(".out.tmp*"))  # the temporary directory was renamed into place
    scores = load_scorer(str(tmp_path / "out")).score(PROBLEMS * 2, CORRECT + WRONG)
    assert [s.outcome for s in scores] == [s.outcome for s in prm.score(PROBLEMS * 2, CORRECT + WRONG)]
    assert sum(s.outcome for s in scores[:4]) > sum(s.outcome for s in scores[4:])
    with pytest.raises(ValueError, match="row 1: missing correct"):
        train_implicit_prm(tiny_ckpt, [{"prompt": "p", "steps": ["a"]}], tmp_path / "bad")


def test_state_round_trip_continues_updates_exactly(tiny_ckpt):
    a = ImplicitPRM.from_pretrained(tiny_ckpt, beta=0.5, lr=3e-3)
    probs, sols, labels = PROBLEMS + PROBLEMS, CORRECT + WRONG, [1.0] * 4 + [0.0] * 4
    a.update(probs, sols, labels)
    b = ImplicitPRM.from_pretrained(tiny_ckpt, beta=0.5, lr=3e-3)
    b.load_state(a.state())
    a.update(probs, sols, labels)
    b.update(probs, sols, labels)  # only equal if the optimizer moments came back too
    assert [s.outcome for s in a.score(probs, sols)] == pytest.approx([s.outcome for s in b.score(probs, sols)], abs=1e-6)
