"""Reward-model demonstration on the quickstart task: do learned reward models pick a
better answer out of 16 samples than majority voting?

1. the quickstart policy: tiny model + SFT warm-start on worked solutions, built as pipeline.py does;
2. its own samples on TRAINING problems, step-labelled by Monte-Carlo rollouts (rewards/label.py);
3. an outcome RM (sample correctness) and a process RM (the step labels), trained with train/rm.py;
4. on held-out problems, 16 samples each: pass@1, maj@16, orm@16 (best of 16 by the ORM), prm@16 per
   aggregation (rewards.AGGREGATIONS: min, prod, last, mean, geo_mean), pass@16 (the ceiling any selector has),
   with 95% intervals. Best-of-N and weighted voting are eval.metrics.best_of_n / weighted_vote, the ones search
   and reward-model evaluation use.

Every stage is cached in OUT (policy, labels.jsonl, orm/, prm/, implicit/, candidates.json), so a rerun resumes; a
cached stage made with other settings is an error (use a new OUT), never silently reused. labels.jsonl may grow:
more --train-problems label only the new solutions.

    rewardflow bench rm --out runs/bench_rm
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import torch

from ...atomic import write_json


# ---------------------------------------------------------------- stages


SYNTHETIC_OFFSET = 3_000_000  # synthetic rows' problems: past RL's (from 0), before SFT's (warmstart.SFT_OFFSET)
SIZES = {  # tiny-model shapes: the quickstart model (1.07M params) and a smaller one for quick runs
    "quickstart": [],
    "small": ["model.hidden_size=64", "model.layers=2", "model.heads=2", "model.intermediate_size=256"],
}


def warm_started_policy(cfg, out: Path, bar):
    """Tiny model + SFT on worked solutions: the one warm-start recipe (recipes/warmstart.py); cached."""
    from ...policy.hf import HFPolicy
    from ..warmstart import make_source, warm_start

    source = make_source(cfg)
    return HFPolicy.from_pretrained(warm_start(cfg, out, source=source, bar=bar)), source


def eval_candidates(policy, verifier, problems, n: int, *, max_new_tokens: int, seed: int, out: Path, bar) -> list[dict]:
    """n samples per held-out problem with their steps, answers and verdicts; cached in candidates.json."""
    from ...policy.base import SamplingParams

    path = out / "candidates.json"
    if path.exists():
        rows = json.loads(path.read_text())
        if len(rows) != len(problems) or any(len(r["correct"]) != n for r in rows):
            raise ValueError(f"{path} holds {len(rows)} problems x {len(rows[0]['correct']) if rows else 0} samples, not "
                             f"{len(problems)} x {n}: use a new --out (or delete it) to change --eval-problems or --n")
        return rows
    tick, rows = bar("sample held-out candidates", len(problems)), []
    for c, start in enumerate(range(0, len(problems), 16)):
        batch = problems[start : start + 16]
        groups = policy.generate([p.prompt for p in batch], SamplingParams(n=n, temperature=1.0, max_new_tokens=max_new_tokens, seed=seed + 10_000 + c))
        verdicts = verifier.verify([p for p, g in zip(batch, groups) for _ in g], [x.text for g in groups for x in g])
        for i, (p, g) in enumerate(zip(batch, groups)):
            v = verdicts[i * n : (i + 1) * n]
            rows.append({"id": p.id, "steps": [x.steps or [x.text] for x in g], "answers": [r.pred for r in v], "correct": [bool(r.correct) for r in v]})
        tick(len(batch))
    write_json(path, rows)
    return rows


def _same_settings(path: Path, stamp: str) -> None:
    """A cached stage is reused only when it was made with the same settings."""
    held = path.read_text() if path.exists() else ""  # caches from before stamps were written are taken as they are
    if held and held != stamp:
        raise ValueError(f"{path.parent} was made with {held}, not {stamp}: use a new --out (or delete it) to change them")


def selection_metrics(cands: list[dict], scores: dict[str, list[list[float]]], n: int) -> dict:
    """pass@1, pass@n, maj@n and, per scorer name, best-of-n and RM-weighted voting; each with its n and 95% CI."""
    from ...eval.metrics import best_of_n, maj_at_k, mean_ci, pass_at_k, weighted_vote, wilson_ci

    def prop(values: list[float]) -> dict:
        p, lo, hi = wilson_ci(sum(values), len(values))
        return {"value": p, "ci95": [lo, hi], "n": len(values)}

    res = {}
    p1, lo, hi = mean_ci([pass_at_k(n, sum(c["correct"]), 1) for c in cands])
    res["pass@1"] = {"value": p1, "ci95": [lo, hi], "n": len(cands)}
    res[f"pass@{n}"] = prop([pass_at_k(n, sum(c["correct"]), n) for c in cands])
    res[f"maj@{n}"] = prop([maj_at_k(c["answers"], c["correct"], n) for c in cands])
    for name, per_problem in scores.items():
        res[f"{name}@{n}"] = prop([best_of_n(s, c["correct"]) for s, c in zip(per_problem, cands)])
        res[f"{name}_weighted_maj@{n}"] = prop([weighted_vote(c["answers"], s, c["correct"]) for s, c in zip(per_problem, cands)])
    return res


def run_bench(out: Path, *, seed: int = 0, sft_steps: int = 400, model_size: str = "quickstart", train_problems: int = 256, samples: int = 4,
              rollouts: int = 8, method: str = "mc-soft", rm_epochs: int = 2, rm_lr: float = 3e-4, eval_problems: int = 100, n: int = 16,
              rm_extra_layers: int = 0, readout: str = "logprob", synthetic: int = 10_000, show_progress: bool = True) -> dict:
    from ..config_loader import load_config
    from ...progress import progress_bars
    from ...rewards.label import LabelConfig, label_solutions, read_labels, sample_solutions
    from ...rewards.synthetic import synthetic_rows
    from ...verify import Verifier

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(None, [f"trainer.seed={seed}", f"sft.steps={sft_steps}", f"data.eval_size={eval_problems}", *SIZES[model_size]])
    max_new = cfg.eval.max_new_tokens
    cost: dict = {}
    with Verifier() as verifier, progress_bars(show_progress) as bar:
        t0 = time.perf_counter()
        policy, source = warm_started_policy(cfg, out, bar)
        cost["policy_seconds"] = time.perf_counter() - t0

        # 2. the policy's own samples on training problems (the RL stream from 0: SFT read from SFT_OFFSET on)
        t0 = time.perf_counter()
        problems = source.train_problems(range(train_problems))
        sols = sample_solutions(policy, problems, samples, max_new_tokens=max_new, seed=seed, progress=bar("sample training solutions", len(problems)))
        lcfg = LabelConfig(method=method, rollouts=rollouts, max_new_tokens=max_new, seed=seed)
        stats = label_solutions(policy, verifier, sols, lcfg, out / "labels.jsonl", progress=bar(f"label steps ({method}, K={rollouts})", len(sols)))
        rows = read_labels(out / "labels.jsonl")
        cost["label_seconds"], cost["label_rollouts_this_run"] = time.perf_counter() - t0, stats["rollouts"]
        cost["label_rollouts_total"] = sum(r["rollouts_used"] for r in rows)

        # 3. outcome and process reward models (train/rm.py)
        t0 = time.perf_counter()
        rm_init = rm_backbone(out, rm_extra_layers, seed)
        # + slipped worked solutions of `synthetic` more training problems, exactly labelled (rewards/synthetic.py)
        syn = synthetic_rows(source.train_problems(range(SYNTHETIC_OFFSET, SYNTHETIC_OFFSET + synthetic)), 4, seed=seed) if synthetic else []
        orm, prm = train_reward_models(rows + syn, out, init=rm_init, epochs=rm_epochs, seed=seed, bar=bar, lr=rm_lr,
                                       extra_layers=rm_extra_layers, readout=readout)
        implicit = train_implicit(rows, out, init=out / "sft", epochs=rm_epochs, seed=seed, bar=bar)
        cost["rm_train_seconds"] = time.perf_counter() - t0

        # 4. best-of-n on held-out problems
        t0 = time.perf_counter()
        eval_set = source.eval_problems[:eval_problems]
        cands = eval_candidates(policy, verifier, eval_set, n, max_new_tokens=max_new, seed=seed, out=out, bar=bar)
        scores = score_candidates(cands, eval_set, orm, prm, implicit, n) | stacked_selector(rows, cands, eval_set, orm, prm, policy, n, seed)
        cost["eval_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        probes = consistency_probes(cands, eval_set, {"orm": (orm, "outcome"), "prm": (prm, "min"), "implicit": (implicit, "outcome")}, seed)
        cost["probe_seconds"] = time.perf_counter() - t0

    labels_summary = _label_summary(rows)
    result = {"task": cfg.data.task, "task_kwargs": cfg.data.task_kwargs, "policy_params": policy.num_params, "n": n,
              "metrics": selection_metrics(cands, scores, n), "labels": labels_summary,
              "rm_diagnostics": _rm_diagnostics(cands, scores), "probes": probes,
              "sizes": {"sft_steps": sft_steps, "model_size": model_size, "train_problems": train_problems, "samples": samples,
                        "rollouts": rollouts, "method": method, "rm_epochs": rm_epochs, "rm_lr": rm_lr, "rm_extra_layers": rm_extra_layers,
                        "readout": readout, "synthetic_problems": synthetic, "synthetic_rows": len(syn),
                        "eval_problems": eval_problems},
              "cost": cost, "machine": f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"}
    write_json(out / "rm.json", result)
    return result


def rm_backbone(out: Path, extra_layers: int, seed: int) -> Path:
    """The reward models' init: the SFT policy, or with extra_layers a deeper copy of it (train/rm.py
    deepen_backbone), cached in OUT."""
    if not extra_layers:
        return out / "sft"
    from ...train.rm import deepen_backbone

    path = out / f"rm_init_deep{extra_layers}"
    if not (path / "config.json").exists():
        deepen_backbone(out / "sft", extra_layers, path, seed=seed)
    return path


def score_candidates(cands: list[dict], eval_set, orm, prm, implicit, n: int) -> dict[str, list[list[float]]]:
    """Every selector's score of every candidate, grouped per problem: the ORM's outcome, the PRM under each step
    aggregation, and the implicit PRM as sigma(r)."""
    from ...rewards import AGGREGATIONS, aggregate

    flat_p, flat_s = flat_candidates(cands, eval_set)
    prm_scores = prm.score(flat_p, flat_s)
    scores = {"orm": _regroup([aggregate(s, "outcome") for s in orm.score(flat_p, flat_s)], n)}
    for how in AGGREGATIONS:
        scores[f"prm_{how}"] = _regroup([aggregate(s, how) for s in prm_scores], n)
    # sigma(r): the implicit PRM's own probability of a correct answer (its CE objective), so that weighted
    # voting adds positive weights; monotone, so best-of-n is unchanged
    implicit_scores = implicit.score(flat_p, flat_s)
    for name, how in (("implicit", "outcome"), ("implicit_min", "min")):
        scores[name] = _regroup([torch.sigmoid(torch.tensor(aggregate(s, how))).item() for s in implicit_scores], n)
    return scores


@torch.no_grad()
def policy_token_probs(policy, prompts: list[str], solutions: list[list[str]], batch: int = 64) -> tuple[list[float], list[float]]:
    """The policy's own confidence in each solution, with no training: exp of the lowest and of the mean
    log-probability of the tokens it wrote, teacher-forced under the same policy (exp keeps the order and gives the
    positive weights weighted voting adds). A written digit the policy itself found unlikely is a likely slip."""
    texts = ["\n".join(s) for s in solutions]
    low, mean = [], []
    for i in range(0, len(texts), batch):
        tb = policy.token_batch(policy.encode_prompts(prompts[i : i + batch]), policy.completion_ids(texts[i : i + batch], add_eos=False))
        logp = policy.logprobs(tb).logprobs  # [b, T]
        mask = tb.completion_mask.bool()  # [b, T]
        low += logp.masked_fill(~mask, 0.0).min(1).values.exp().tolist()
        mean += ((logp * mask).sum(1) / mask.sum(1).clamp(min=1)).exp().tolist()
    return low, mean


def fit_logistic(x: torch.Tensor, y: torch.Tensor, *, l2: float = 1e-3, steps: int = 200) -> tuple[torch.Tensor, float]:
    """Logistic regression, min_w,b mean BCE(x w + b, y) + l2 |w|^2 / 2, by L-BFGS. x: [N, F], y: [N] in [0, 1].
    At the optimum the intercept's gradient is 0: the mean predicted probability equals the mean label."""
    x, y = x.double(), y.double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)  # [F]
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, tolerance_grad=1e-10, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.item()


def _features(orm, prm, policy, problems, prompts: list[str], solutions: list[list[str]]) -> torch.Tensor:
    """[N, 4] per solution: logit of the ORM's score, logit of the PRM's lowest step score, log of the policy's lowest
    and mean token probability."""
    from ...rewards import aggregate

    low, mean = policy_token_probs(policy, prompts, solutions)
    cols = [[aggregate(s, "outcome") for s in orm.score(problems, solutions)], [aggregate(s, "min") for s in prm.score(problems, solutions)], low, mean]
    x = torch.tensor(cols, dtype=torch.float64).T.clamp(1e-6, 1 - 1e-6)  # [N, 4] probabilities
    return torch.cat([torch.logit(x[:, :2]), x[:, 2:].log()], 1)


def stacked_selector(rows: list[dict], cands: list[dict], eval_set, orm, prm, policy, n: int, seed: int) -> dict[str, list[list[float]]]:
    """The policy's confidence alone (policy_min_p, policy_mean_p) and a learned combination of it with the ORM and
    PRM (`stacked`): a logistic regression on the outcome labels of the RM training's held-out tenth of prompts (rows
    the two RMs never trained on, so their scores there are not overconfident); features standardised on those rows."""
    from ...data.problem import Problem
    from ...train.rm import split_by_prompt

    held = split_by_prompt(rows, 0.1, seed)[1]
    flat_p, flat_s = flat_candidates(cands, eval_set)
    x_eval = _features(orm, prm, policy, flat_p, [p.prompt for p in flat_p], flat_s)  # [C, 4]
    out = {"policy_min_p": _regroup(x_eval[:, 2].exp().tolist(), n), "policy_mean_p": _regroup(x_eval[:, 3].exp().tolist(), n)}
    if held and 0 < sum(bool(r["correct"]) for r in held) < len(held):
        x = _features(orm, prm, policy, [Problem(str(r.get("id", "")), r["prompt"], None, "") for r in held], [r["prompt"] for r in held],
                      [r["steps"] for r in held])  # [H, 4]
        mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
        w, b = fit_logistic((x - mu) / sd, torch.tensor([float(r["correct"]) for r in held]))
        out["stacked"] = _regroup(torch.sigmoid((x_eval - mu) / sd @ w + b).tolist(), n)
    return out


def consistency_probes(cands: list[dict], eval_set, scorers: dict, seed: int) -> dict[str, list[dict]]:
    """Shen et al. 2025's probes (eval/rm/probes.py: drop the question, change its numbers, shuffle or truncate the
    steps) on the held-out candidates, per reward model (name -> (scorer, aggregation)): does its score follow the
    question, or only the solution's own consistency?"""
    from ...eval.rm.probes import probe_table

    flat_p, flat_s = flat_candidates(cands, eval_set)
    return {name: probe_table(scorer, flat_p, flat_s, how=how, seed=seed) for name, (scorer, how) in scorers.items()}


def flat_candidates(cands: list[dict], eval_set) -> tuple[list, list[list[str]]]:
    """Every held-out candidate as (its problem, its steps), problem by problem: what a Scorer takes."""
    by_id = {p.id: p for p in eval_set}
    return [by_id[c["id"]] for c in cands for _ in c["steps"]], [s for c in cands for s in c["steps"]]


def _regroup(flat: list[float], n: int) -> list[list[float]]:
    return [flat[i : i + n] for i in range(0, len(flat), n)]


def _label_summary(rows: list[dict]) -> dict:
    steps = [l for r in rows for l in r["labels"]]
    return {"solutions": len(rows), "correct_frac": sum(r["correct"] for r in rows) / max(1, len(rows)),
            "steps": len(steps), "mean_step_label": sum(steps) / max(1, len(steps)),
            "rollouts": sum(r["rollouts_used"] for r in rows)}


def auroc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """The probability that a random positive outscores a random negative (ties count 1/2); 0.5 is chance."""
    pos_t, neg_t = torch.tensor(pos)[:, None], torch.tensor(neg)[None, :]  # [P, 1], [1, Q]
    return ((pos_t > neg_t).float() + 0.5 * (pos_t == neg_t).float()).mean().item()


def _rm_diagnostics(cands: list[dict], scores: dict[str, list[list[float]]]) -> dict:
    """Whether each scorer separates correct from wrong samples: AUROC over all held-out samples (easy vs hard
    problems counts too), and within-problem AUROC, the mean over problems with both kinds of sample of the
    AUROC among that problem's own samples (what best-of-N needs)."""
    out = {}
    for name, per_problem in scores.items():
        pos = [s for sc, c in zip(per_problem, cands) for s, ok in zip(sc, c["correct"]) if ok]
        neg = [s for sc, c in zip(per_problem, cands) for s, ok in zip(sc, c["correct"]) if not ok]
        if not pos or not neg:
            continue
        within = [auroc([s for s, ok in zip(sc, c["correct"]) if ok], [s for s, ok in zip(sc, c["correct"]) if not ok])
                  for sc, c in zip(per_problem, cands) if 0 < sum(c["correct"]) < len(c["correct"])]
        out[name] = {"auroc": auroc(pos, neg), "within_problem_auroc": sum(within) / len(within), "problems_mixed": len(within),
                     "mean_correct": sum(pos) / len(pos), "mean_wrong": sum(neg) / len(neg)}
    return out


def train_reward_models(rows: list[dict], out: Path, *, init: Path, epochs: int, seed: int, bar, lr: float = 3e-4, extra_layers: int = 0,
                        readout: str = "linear"):
    """An ORM on the samples' correctness (pointwise cross-entropy) and a PRM on their step labels, both on the
    SFT policy's backbone with a fresh scalar head or its own LM head (readout, rewards/models.py); cached in
    OUT/orm and OUT/prm."""
    from ...rewards.models import RewardModel
    from ...train.rm import RMTrainConfig, steps_total, train_reward_model

    models, stamp = [], json.dumps({"epochs": epochs, "lr": lr, "rows": len(rows), "seed": seed} | ({"extra_layers": extra_layers} if extra_layers else {})
                                   | ({"readout": readout} if readout != "linear" else {}))
    for kind in ("orm", "prm"):
        path = out / kind
        cfg = RMTrainConfig(kind=kind, loss="bce", epochs=epochs, lr=lr, batch_size=16, seed=seed, readout=readout)
        if (path / "scorer.json").exists():
            _same_settings(path / "stamp.json", stamp)
            models.append(RewardModel.load(path))
            continue
        rm, _ = train_reward_model(init, rows, path, cfg, progress=bar(f"train {kind.upper()}", steps_total(rows, cfg)))
        (path / "stamp.json").write_text(stamp)
        models.append(rm)
    return tuple(models)


def train_implicit(rows: list[dict], out: Path, *, init: Path, epochs: int, seed: int, bar, lr: float = 1e-4, beta: float = 0.05):
    """The implicit PRM (Yuan et al. 2024) on the same samples' outcome labels only: r = beta log pi/pi_ref from the SFT
    policy (rewards/implicit.py); cached in OUT/implicit."""
    from ...rewards.implicit import ImplicitPRM
    from ...train.rm import train_implicit_prm

    path, stamp = out / "implicit", json.dumps({"epochs": epochs, "lr": lr, "beta": beta, "rows": len(rows), "seed": seed})
    if (path / "scorer.json").exists():
        _same_settings(path / "stamp.json", stamp)
        return ImplicitPRM.load(path)
    prm = train_implicit_prm(init, rows, path, beta=beta, epochs=epochs, lr=lr, batch_size=16, seed=seed,
                             progress=bar("train implicit PRM", len(rows) * epochs))
    (path / "stamp.json").write_text(stamp)
    return prm


QUICK = dict(sft_steps=30, model_size="small", train_problems=16, samples=2, rollouts=2, rm_epochs=1, eval_problems=10, n=4, synthetic=50)  # --quick: a smoke test


def run_from_args(args) -> int:
    kw = dict(seed=args.seed, sft_steps=args.sft_steps, model_size=args.model_size, train_problems=args.train_problems,
              samples=args.samples, rollouts=args.rollouts, method=args.method, rm_epochs=args.rm_epochs, rm_lr=args.rm_lr,
              eval_problems=args.eval_problems, n=args.n, rm_extra_layers=getattr(args, "rm_extra_layers", 0),
              readout=getattr(args, "readout", "logprob"), synthetic=getattr(args, "synthetic", 10_000))
    res = run_bench(Path(args.out), **(kw | (QUICK if getattr(args, "quick", False) else {})), show_progress=not args.quiet)
    from ...progress import console

    console.print(json.dumps({k: round(v["value"], 3) for k, v in res["metrics"].items()}, indent=2))
    console.print(f"wrote {Path(args.out) / 'rm.json'}")
    return 0

