"""`rewardflow autocei`: Auto-CEI (Zhao et al., ICLR 2025) against plain expert iteration (RAFT), a fixed refusal
reward (R-Tuning style) and the base policy, on arithmetic chains of easy and hard lengths (2-6 terms by default).

Reads top to bottom:
1. the base policy: the tiny model (its tokenizer also learns the refusal line), the one warm-start recipe (SFT on
   worked solutions), then the R-Tuning initialisation the paper starts from: the warm-started policy answers
   autocei.init_prompts training problems greedily; where it is wrong the target becomes the correct steps it did
   reach followed by "I don't know.", where right the worked solution; a short SFT on those targets.
2. per method, autocei.iterations rounds of expert iteration from the base: sample autocei.samples completions of
   fresh training problems, reward them (algos/autocei.ei_rewards: +1 right, -1 wrong, a refusal by method), keep
   the positive ones (correct answers and accepted refusals), SFT on them (train/sft.run_sft, the one SFT loop),
   measure precision, refusal rate and f on a validation split. Auto-CEI's threshold c1 starts at the base policy's
   mean refusal length plus a step and moves by hill climbing on f between rounds (algos/autocei.curriculum_update).
3. each method's round with the best validation f is evaluated greedily on the held-out test split.
"""
from __future__ import annotations

import copy
import json
import platform
import random
import time
from pathlib import Path

# Heavy modules (torch, the policy, the verifier) are imported inside the functions: `rewardflow --help` loads this
# module to register the verb and must stay fast.
from ..config import Config

VAL_OFFSET, INIT_OFFSET, ITER_OFFSET = 3_000_000, 3_500_000, 4_000_000  # disjoint slices of the training stream
REFUSAL_LINE = "I don't know."
# What a method gives a refusal: None is Auto-CEI's length-dependent reward, a number is a fixed reward
# (plain EI's -1 never keeps one; R-Tuning's autocei.fixed_refusal always does).
REFUSAL_REWARD = {"ei": lambda a: -1.0, "rtuning": lambda a: a.fixed_refusal, "autocei": lambda a: None}


def judge(policy, verifier, problems: list, *, n: int, temperature: float, max_new_tokens: int, seed: int) -> list[dict]:
    """n completions of each problem with their verdict, refusal flag and reasoning length (greedy when temperature=0)."""
    from ..data.longcot import is_refusal, reasoning_length
    from ..policy.base import SamplingParams

    params = SamplingParams(n=n, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    rows = []
    for lo in range(0, len(problems), 64):
        batch = problems[lo : lo + 64]
        texts = [c.text for g in policy.generate([p.prompt for p in batch], params) for c in g]
        flat = [p for p in batch for _ in range(n)]
        for p, t, v in zip(flat, texts, verifier.verify(flat, texts)):
            refused = is_refusal(t)
            rows.append({"problem": p, "text": t, "correct": bool(v.correct) and not refused, "refused": refused,
                         "length": reasoning_length(t)})
    return rows


def n_terms(problem) -> int:
    from ..data import worked_solution

    return len(worked_solution(problem).splitlines())  # steps + the Answer line = the number of terms


def summarise(rows: list[dict], lam: float, *, by_terms: bool = False) -> dict:
    """precision, refusal rate, accuracy, f (with Wilson 95% intervals for the three rates), optionally per term count."""
    from ..algos.autocei import objective, reliability
    from ..eval.metrics import wilson_ci

    m = reliability([r["correct"] for r in rows], [r["refused"] for r in rows])
    m["f"] = objective(m["precision"], m["refusal_rate"], lam)
    answered = sum(not r["refused"] for r in rows)
    m["precision_ci"] = list(wilson_ci(round(m["precision"] * answered), answered)[1:]) if answered else None
    m["refusal_rate_ci"] = list(wilson_ci(sum(r["refused"] for r in rows), len(rows))[1:])
    m["accuracy_ci"] = list(wilson_ci(sum(r["correct"] for r in rows), len(rows))[1:])
    m["n"] = len(rows)
    m["mean_refusal_length"] = sum(r["length"] for r in rows if r["refused"]) / max(1, sum(r["refused"] for r in rows))
    if by_terms:
        groups: dict[int, list] = {}
        for r in rows:
            groups.setdefault(n_terms(r["problem"]), []).append(r)
        m["by_terms"] = {k: {**reliability([r["correct"] for r in g], [r["refused"] for r in g]), "n": len(g)} for k, g in sorted(groups.items())}
    return m


def batches(pairs: list[tuple[str, str]], batch_size: int, seed: int):
    """step -> batch_size (prompt, completion) pairs, cycling through a seeded shuffle of `pairs`."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    return lambda step: [pairs[order[(step * batch_size + i) % len(order)]] for i in range(batch_size)]


def _fine_tune(policy, pairs, cfg: Config, *, steps: int, seed: int, lr: float, log=None) -> None:
    from ..train.sft import run_sft

    a = cfg.autocei
    if pairs and steps > 0:
        run_sft(policy, batches(pairs, a.batch_size, seed), steps=steps, lr=lr, warmup_steps=0, max_grad_norm=cfg.trainer.max_grad_norm,
                micro_batch_size=cfg.trainer.micro_batch_size, log=log)


def refusal_targets(rows: list[dict]) -> tuple[list[tuple[str, str]], dict]:
    """R-Tuning's relabelling (Zhang et al. 2024) in step form: a problem answered right keeps its worked solution;
    one answered wrong gets the correct steps the policy did reach, then the refusal line."""
    from ..data import worked_solution
    from ..data.longcot import refusal_text

    pairs, n_ref = [], 0
    for r in rows:
        p, gold = r["problem"], worked_solution(r["problem"]).splitlines()[:-1]
        if r["correct"]:
            pairs.append((p.prompt, worked_solution(p)))
            continue
        said = [ln.strip() for ln in r["text"].splitlines()]
        reached = 0
        while reached < len(gold) and reached < len(said) and said[reached] == gold[reached]:
            reached += 1
        pairs.append((p.prompt, refusal_text(gold[:reached])))
        n_ref += 1
    return pairs, {"init/refusal_targets": n_ref, "init/answer_targets": len(rows) - n_ref}


def build_base(cfg: Config, out: Path, source, verifier, log, bar) -> Path:
    """The base policy every method starts from (cached in out/base)."""
    from ..data import worked_solution
    from ..policy.hf import HFPolicy
    from ..policy.tiny import TinyModelConfig, make_tiny_checkpoint
    from ..atomic import write_text
    from .warmstart import SFT_OFFSET, warm_start

    base = out / "base"
    if (base / "DONE").exists():
        return base
    wcfg = copy.deepcopy(cfg)
    if cfg.model.path is None:  # the tiny model, its tokenizer learned from prompts, worked solutions and refusals
        sample = source.train_problems(range(SFT_OFFSET - 2000, SFT_OFFSET))
        corpus = [p.prompt for p in sample] + [worked_solution(p) for p in sample] + [REFUSAL_LINE] * 200
        m = cfg.model
        tiny = TinyModelConfig(m.hidden_size, m.layers, m.heads, m.intermediate_size, m.max_positions, cfg.trainer.seed)
        wcfg.model.path = str(make_tiny_checkpoint(out / "init", tiny, corpus))
    policy = HFPolicy.from_pretrained(warm_start(wcfg, out, source=source, log=log, bar=bar))
    a = cfg.autocei
    rows = judge(policy, verifier, source.train_problems(range(INIT_OFFSET, INIT_OFFSET + a.init_prompts)), n=1, temperature=0.0,
                 max_new_tokens=a.max_new_tokens, seed=cfg.trainer.seed)
    pairs, stats = refusal_targets(rows)
    log.log(0, stats, phase="init")
    _fine_tune(policy, pairs, cfg, steps=a.init_steps, seed=cfg.trainer.seed, lr=a.init_lr, log=None)
    policy.model.save_pretrained(base)
    policy.tokenizer.save_pretrained(base)
    write_text(base / "DONE", json.dumps(stats))
    return base


def ei_round(policy, verifier, problems, cfg: Config, method: str, it: int, curriculum: dict) -> tuple[list, dict]:
    """One round's samples, rewards and kept (prompt, completion) pairs. Auto-CEI's first round sets c1, c2 and the
    step from these samples of the starting policy (the authors' initialisation)."""
    import torch

    from ..algos.autocei import ei_keep, ei_rewards, initial_threshold
    from ..train.rollout import step_seed

    a = cfg.autocei
    rows = judge(policy, verifier, problems, n=a.samples, temperature=a.temperature, max_new_tokens=a.max_new_tokens,
                 seed=step_seed(cfg.trainer.seed, it))
    if method == "autocei" and "c1" not in curriculum:
        c1, step, c2 = initial_threshold([r["length"] for r in rows if r["refused"]], [r["length"] for r in rows],
                                         step_frac=a.step_frac, max_step=a.max_step)
        curriculum.update(c1=c1, step=step, c2=c2, direction=1)
    fixed = REFUSAL_REWARD[method](a)
    rewards = ei_rewards(torch.tensor([r["correct"] for r in rows]), torch.tensor([r["refused"] for r in rows]),
                         torch.tensor([float(r["length"]) for r in rows]), c1=curriculum.get("c1", 0.0), c2=curriculum.get("c2", 1.0),
                         fixed_refusal=fixed)  # [N]
    keep = ei_keep(rewards).tolist()
    pairs = [(r["problem"].prompt, r["text"]) for r, k in zip(rows, keep) if k]
    refusals = [k for r, k in zip(rows, keep) if r["refused"]]
    stats = {"train/samples": len(rows), "train/kept": len(pairs), "train/correct": sum(r["correct"] for r in rows) / len(rows),
             "train/refusals": len(refusals) / len(rows), "train/refusals_kept": sum(refusals) / max(1, len(refusals)),
             "train/mean_reward": rewards.mean().item()}
    return pairs, stats


def run_method(cfg: Config, method: str, base: Path, source, val, verifier, log, bar) -> dict:
    """Expert iteration of one method from the base policy; the round with the best validation f is kept."""
    from ..algos.autocei import curriculum_update, refusal_reward
    from ..policy.hf import HFPolicy
    from ..train.rollout import step_seed

    a = cfg.autocei
    policy = HFPolicy.from_pretrained(base)
    start = summarise(judge(policy, verifier, val, n=1, temperature=0.0, max_new_tokens=a.max_new_tokens, seed=0), a.lam)
    history, curriculum = [{"iteration": 0, "val": start}], {}
    best = (start["f"], 0, copy.deepcopy(policy.model.state_dict()))
    tick = bar(f"autocei: {method}", a.iterations if method != "base" else 0)
    for it in range(1, (a.iterations if method != "base" else 0) + 1):
        problems = source.train_problems(range(ITER_OFFSET + (it - 1) * a.prompts_per_iter, ITER_OFFSET + it * a.prompts_per_iter))
        pairs, stats = ei_round(policy, verifier, problems, cfg, method, it, curriculum)
        row = {"iteration": it, "train": stats, "c1": curriculum.get("c1")}
        _fine_tune(policy, pairs, cfg, steps=a.sft_steps, seed=step_seed(cfg.trainer.seed, it) + 1, lr=a.lr)
        row["val"] = summarise(judge(policy, verifier, val, n=1, temperature=0.0, max_new_tokens=a.max_new_tokens, seed=0), a.lam)
        if method == "autocei":  # hill climbing on f, against the best f so far (the authors' curriculum)
            curriculum["c1"], curriculum["direction"] = curriculum_update(curriculum["c1"], curriculum["direction"], curriculum["step"],
                                                                          row["val"]["f"], best[0])
            row["next_c1"] = curriculum["c1"]
        if row["val"]["f"] > best[0]:
            best = (row["val"]["f"], it, copy.deepcopy(policy.model.state_dict()))
        history.append(row)
        log.log(it, {**stats, **{f"val/{k}": v for k, v in row["val"].items() if isinstance(v, float)}, "curriculum/c1": row["c1"] or 0.0},
                phase=method)
        tick(1, f=row["val"]["f"])
    if a.select == "best":
        policy.model.load_state_dict(best[2])
    test = summarise(judge(policy, verifier, source.eval_problems, n=1, temperature=0.0, max_new_tokens=a.max_new_tokens, seed=0), a.lam,
                     by_terms=True)
    out = {"iterations": history, "best_iteration": best[1], "tested_iteration": best[1] if a.select == "best" else len(history) - 1, "test": test}
    if curriculum:
        out["curriculum"] = {k: v for k, v in curriculum.items()}
        out["refusal_reward_at_lengths"] = {L: float(refusal_reward(float(L), curriculum["c1"], curriculum["c2"])) for L in range(0, 7)}
    return out


def run_autocei(cfg: Config, out: Path, *, show_progress: bool = True) -> dict:
    import torch

    from ..atomic import write_json
    from ..progress import progress_bars
    from ..train.metrics import MetricsLog
    from ..verify import Verifier
    from .config_loader import to_dict
    from .warmstart import make_source

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.trainer.seed)
    write_json(out / "config.json", to_dict(cfg))
    source = make_source(cfg)
    val = source.train_problems(range(VAL_OFFSET, VAL_OFFSET + cfg.autocei.val_size))
    log = MetricsLog(out / "metrics.jsonl")
    results: dict = {"task": cfg.data.task, "task_kwargs": dict(cfg.data.task_kwargs), "lambda": cfg.autocei.lam, "methods": {},
                     "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}}
    with Verifier() as verifier, progress_bars(show_progress) as bar:
        base = build_base(cfg, out, source, verifier, log, bar)
        for method in cfg.autocei.methods:
            results["methods"][method] = run_method(cfg, method, base, source, val, verifier, log, bar)
            write_json(out / "results.json", results)  # after every method, so a long run shows its progress
    results["wall_seconds"] = time.perf_counter() - t0
    write_json(out / "results.json", results)
    return results


HELP = """Auto-CEI (Zhao et al., ICLR 2025): expert iteration where the policy may answer or say "I don't know".
A refusal earns 2 * sigmoid(c2 * (L - c1)) - 1 for L reasoning steps before it, so a lazy refusal is penalised and
one after a long attempt is kept; the threshold c1 moves between rounds by hill climbing on
f = (1 - lambda) * precision + lambda * (1 - refusal rate). Compared, from one base policy (warm-start SFT, then an
R-Tuning initialisation that teaches refusals where the policy was wrong), with plain expert iteration (ei: RAFT,
refusals never kept), a fixed refusal reward (rtuning) and the base policy itself. Writes results.json (per method:
each round's validation precision, refusal rate, accuracy and f, Auto-CEI's c1; the best round's test metrics,
also per number of terms), metrics.jsonl and the base policy (DIR/base).

examples:
  rewardflow autocei --out runs/autocei                                   # configs/autocei.yaml: chain sums of 2-6 terms
  rewardflow autocei --config configs/autocei.yaml --out runs/autocei autocei.lam=0.3 autocei.iterations=4
  rewardflow autocei --out runs/autocei_small autocei.methods=[base,autocei] autocei.iterations=2 sft.steps=50
"""


def _cli(args) -> int:
    from .config_loader import load_config
    from .run_dir import owned_run_dir

    model = [f"model.path={args.model}"] if args.model else []  # an override, so it is validated with the rest
    cfg = load_config(args.config, [f"trainer.seed={args.seed}", *args.overrides, *model])
    with owned_run_dir(args) as out:
        res = run_autocei(cfg, out, show_progress=not args.quiet)
    for name, m in res["methods"].items():
        t = m["test"]
        print(f"{name:8s} precision {t['precision']:.3f}  refusal {t['refusal_rate']:.3f}  accuracy {t['accuracy']:.3f}  f {t['f']:.3f}"
              f"  (best round {m['best_iteration']})")
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


def register(sub) -> None:
    import argparse

    from .run_dir import add_recipe_args

    p = sub.add_parser("autocei", help="Auto-CEI: curriculum expert iteration with refusals, against EI, R-Tuning and the base policy.",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_args(p, "autocei", "start from this policy instead of the tiny model (a directory, .gguf or smollm2-135m-instruct)", "autocei.lam=0.3 autocei.iterations=4")
    p.set_defaults(func=_cli)
