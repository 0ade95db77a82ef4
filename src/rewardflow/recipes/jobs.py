"""The jobs behind `rewardflow preference` and `rewardflow oreo`: load the starting policy (model.path),
train, evaluate before and after on the held-out split, write results.json (atomically) and metrics.jsonl."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..config import Config
from ..policy.lora import save_policy

from .config_loader import ConfigError, to_dict


def _start(cfg: Config, out: Path, verb: str):
    from .pipeline import load_rl_models
    from .warmstart import make_source
    from ..train.metrics import MetricsLog

    if not cfg.model.path:
        raise ConfigError(f"{verb} starts from a trained policy: set model.path (e.g. model.path=runs/quickstart/sft)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
    torch.manual_seed(cfg.trainer.seed)
    # fp32 master weights with model.dtype autocast, LoRA from config `model`, and the reference DPO / OREO always need
    policy, ref, autocast = load_rl_models(cfg, Path(cfg.model.path), cfg.model.device, need_ref=True)
    return make_source(cfg), policy, ref, MetricsLog(out / "metrics.jsonl"), autocast


def _evaluate(policy, problems, cfg: Config, bar, name: str) -> dict:
    from ..eval.runner import evaluate_policy
    from ..verify import Verifier

    e = cfg.eval
    with Verifier() as verifier:
        return evaluate_policy(policy, verifier, problems, n_samples=e.n_samples, ks=e.ks, temperature=e.temperature,
                               max_new_tokens=e.max_new_tokens, greedy=e.greedy, seed=cfg.trainer.seed, progress=bar(name, len(problems)))


def _finish(out: Path, results: dict, t0: float) -> dict:
    from ..atomic import write_json

    results["wall_seconds"] = time.perf_counter() - t0
    results["delta"] = {k: results["after"][k] - results["before"][k] for k in ("pass@1", "greedy") if k in results["after"]}
    write_json(out / "results.json", results)
    return results


def run_preference(cfg: Config, out: Path, *, show_progress: bool = True) -> dict:
    """Offline DPO-family on preference.pairs, or (pairs unset) online iterative DPO scored by preference.scorer."""
    from ..progress import progress_bars
    from ..rewards import load_scorer
    from ..train.preference import load_pairs, online_iterative_dpo, train_pairs

    t0, out = time.perf_counter(), Path(out)
    pc = cfg.preference
    pairs = load_pairs(pc.pairs) if pc.pairs else None  # bad rows fail before any model is loaded
    if cfg.model.lora.rank > 0 and pc.refresh_ref and not pairs:
        raise ConfigError("preference.refresh_ref=true makes the policy the next reference, a second copy; with model.lora.rank > 0 "
                          "the reference is the frozen base: set preference.refresh_ref=false")
    source, policy, ref, log, autocast = _start(cfg, out, "preference")
    problems = source.eval_problems
    with progress_bars(show_progress) as bar, autocast:
        results = {"mode": "offline" if pairs else "online", "loss": pc.loss, "before": _evaluate(policy, problems, cfg, bar, "eval before")}
        if pairs:
            steps = -(-len(pairs) // pc.batch_size) * pc.epochs
            history = train_pairs(policy, ref, pairs, pc, seed=cfg.trainer.seed, log=log, progress=bar(f"{pc.loss} on {len(pairs)} pairs", steps),
                                  max_grad_norm=cfg.trainer.max_grad_norm, micro_batch_size=cfg.trainer.micro_batch_size)
        else:
            scorer = load_scorer(pc.scorer)
            history = online_iterative_dpo(policy, ref, source, scorer, cfg, log=log, progress=bar(f"online iterative {pc.loss}", pc.iterations))
        results["history"] = history
        results["after"] = _evaluate(policy, problems, cfg, bar, "eval after")
    save_policy(policy, out / "policy")  # loadable by plain transformers (LoRA merged; the adapter in policy/adapter)
    return _finish(out, results, t0)


def run_oreo(cfg: Config, out: Path, *, show_progress: bool = True) -> dict:
    """Sample offline.group_size trajectories for offline.prompts training prompts from the start policy,
    verify them, train OREO, save the policy (out/policy) and the value model (out/value)."""
    from ..progress import progress_bars
    from ..rewards.verifier import VerifierScorer
    from ..train.offline import sample_trajectories, save_value, train_oreo

    t0, out = time.perf_counter(), Path(out)
    oc = cfg.offline
    source, policy, ref, log, autocast = _start(cfg, out, "oreo")
    problems = source.eval_problems
    scorer = VerifierScorer()
    with progress_bars(show_progress) as bar, autocast:
        results = {"before": _evaluate(policy, problems, cfg, bar, "eval before")}
        train = source.train_problems(range(oc.prompts))
        trajs = sample_trajectories(policy, scorer, train, k=oc.group_size, max_new_tokens=cfg.rollout.max_new_tokens,
                                    temperature=cfg.rollout.temperature, seed=cfg.trainer.seed)
        (out / "trajectories.jsonl").write_text("".join(json.dumps({k: v for k, v in t.items() if k != "token_ids"}) + "\n" for t in trajs))
        results["trajectories"] = {"n": len(trajs), "success_rate": sum(t["reward"] for t in trajs) / len(trajs)}
        steps = -(-len(trajs) // oc.batch_size) * oc.epochs
        value, history = train_oreo(policy, ref, trajs, oc, seed=cfg.trainer.seed, log=log, progress=bar("OREO", steps),
                                    max_grad_norm=cfg.trainer.max_grad_norm, micro_batch_size=cfg.trainer.micro_batch_size)
        results["history_last"] = history[-1]
        results["after"] = _evaluate(policy, problems, cfg, bar, "eval after")
    scorer.verifier.close()
    save_policy(policy, out / "policy")
    save_value(value, policy.tokenizer, out / "value", beta=oc.beta)
    return _finish(out, results, t0)
