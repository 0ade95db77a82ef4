"""The end-to-end job behind `rewardflow quickstart` and `rewardflow train`:
model -> SFT warm-start on worked solutions -> eval -> GRPO -> eval -> results.json, plots, report.html.

Each stage leaves its output in the run directory, so `--resume` skips finished stages and continues RL
from its last checkpoint.

Under torchrun (`torchrun --nproc_per_node K -m rewardflow.recipes.cli train ...`) rank 0 runs every stage and writes
every file; the other ranks wait while it builds, warm-starts and evaluates the model, join it for RL (each
trains its share of every batch, see train/rl.py), and wait again for its final evaluation.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..atomic import write_json
from ..config import Config
from ..distributed.ddp import device_for_rank, init_distributed
from ..eval.report import plot_pass_at_k, plot_rl_curves, write_html
from ..eval.runner import evaluate_policy
from ..optim import mixed_precision, trainable_parameters
from ..policy.backends import load_policy
from ..policy.hf import HFPolicy
from ..policy.lora import prepare_model, reference_for
from ..progress import progress_bars
from ..rewards.verifier import VerifierScorer
from ..train.metrics import MetricsLog
from ..train.rl import train_rl
from ..train.tracking import with_trackers
from .config_loader import to_dict
from .warmstart import make_source, warm_start


def run_pipeline(cfg: Config, out: Path, *, resume: bool = False, show_progress: bool = True) -> dict:
    t_start = time.perf_counter()
    out = Path(out)
    rank, world = init_distributed(cfg.model.device)  # (0, 1) unless launched by torchrun
    if rank > 0:
        return _rl_follower(cfg, out, world, resume=resume)
    device = device_for_rank(cfg.model.device)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.trainer.seed)
    source = make_source(cfg)
    scorer = VerifierScorer()
    log = with_trackers(_open_log(out, resume), cfg.logging.trackers, to_dict(cfg))  # SFT and RL rows reach the trackers too
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))

    with progress_bars(show_progress) as bar:
        # 1-2. the starting model (model.path or the tiny model) and its supervised warm-start on worked solutions
        warm_start(cfg, out, source=source, log=log, bar=bar, device=device)
        start = _rl_start(cfg, out)
        policy, ref, autocast = load_rl_models(cfg, start, device)
        results: dict = {"task": cfg.data.task, "model": {"params": policy.num_params, "path": str(cfg.model.path or out / "init"),
                                                          "trainable_params": sum(p.numel() for p in trainable_parameters(policy.model))}}
        with autocast:
            # 3. evaluate the RL starting point
            if resume and (out / "eval_sft.json").exists():
                results["sft"] = json.loads((out / "eval_sft.json").read_text())
            else:
                results["sft"] = _evaluate(policy, scorer, source.eval_problems, cfg, bar("eval before RL", len(source.eval_problems)))
                write_json(out / "eval_sft.json", results["sft"])
            # 4. RL with verifiable rewards, with a small periodic held-out evaluation for the curves
            periodic = _periodic_eval(policy, scorer, source.eval_problems[: cfg.trainer.eval_problems], cfg)
            if not resume or _resume_step(out) is None:
                first = periodic(0)
                first.pop("samples", None)  # train_rl writes samples.jsonl; the step-0 row keeps the numbers only
                log.log(0, {f"eval/{k}": v for k, v in first.items()})
            _barrier(world)  # the other ranks may now load `start` and join RL
            train_rl(cfg, policy, ref, source, scorer, out / "rl", log=log, resume=resume, evaluate=periodic,
                     progress=bar(f"RL ({cfg.algo.name})", cfg.trainer.steps))
            # 5. evaluate the trained policy with the same samples budget and seed
            results["rl"] = _evaluate(policy, scorer, source.eval_problems, cfg, bar("eval after RL", len(source.eval_problems)))
    results["wall_seconds"] = time.perf_counter() - t_start  # this invocation only (a resumed run counts its own part)
    _report(results, cfg, out, log, resume=resume)
    scorer.verifier.close()
    if hasattr(log, "close"):
        log.close()  # flush TensorBoard / W&B
    _barrier(world)  # results.json is written: the other ranks may return it
    return results


def load_rl_models(cfg: Config, start: Path, device: str, *, need_ref: bool = False):
    """(policy, reference or None, autocast context) for RL from checkpoint `start`: fp32 master weights with
    model.dtype as the autocast compute dtype, LoRA and gradient checkpointing from config `model`, and the KL
    reference (algo.kl_coef > 0, or need_ref: DPO and OREO): the frozen base of a LoRA policy (no second copy), else a second load of `start`."""
    policy = load_policy(start, cfg.model.backend, device=device, dtype=torch.float32, behaviour_logprobs=cfg.algo.tis_cap > 0,
                         compile_decode=cfg.model.compile_decode)  # hf | vllm
    prepare_model(policy, cfg.model, seed=cfg.trainer.seed)
    autocast = mixed_precision(policy.model, cfg.model.dtype)
    load_ref = lambda: HFPolicy.from_pretrained(start, device=device, dtype=torch.float32)
    ref = reference_for(policy, load_ref) if need_ref or cfg.algo.kl_coef > 0 else None
    return policy, ref, autocast


def _evaluate(policy, scorer, problems, cfg: Config, progress) -> dict:
    e = cfg.eval
    return evaluate_policy(policy, scorer.verifier, problems, n_samples=e.n_samples, ks=e.ks, temperature=e.temperature,
                           max_new_tokens=e.max_new_tokens, greedy=e.greedy, seed=cfg.trainer.seed, progress=progress)


def _periodic_eval(policy, scorer, subset, cfg: Config):
    """The small held-out evaluation every trainer.eval_every steps: pass@1 of 4 samples and greedy accuracy."""
    e = cfg.eval

    def periodic(step: int) -> dict:
        res = evaluate_policy(policy, scorer.verifier, subset, n_samples=4, ks=[1], temperature=e.temperature,
                              max_new_tokens=e.max_new_tokens, greedy=True, seed=cfg.trainer.seed + step)
        return {"pass@1": res["pass@1"], "greedy": res["greedy"], "samples": res.get("samples", [])}  # samples -> samples.jsonl

    return periodic


def _report(results: dict, cfg: Config, out: Path, log, *, resume: bool) -> None:
    """results.json, the RL curves, pass@k before and after, and one HTML page."""
    ks = list(cfg.eval.ks)
    results["resumed"] = resume
    results["delta"] = {k: results["rl"][k] - results["sft"][k] for k in ("pass@1", "greedy", f"maj@{max(ks)}") if k in results["rl"]}
    results["algo"] = cfg.algo.name
    write_json(out / "results.json", results)
    images = [plot_rl_curves(log.read(), out / "rl_curves.png"),
              plot_pass_at_k({"after SFT": results["sft"], "after RL": results["rl"]}, ks, out / "pass_at_k.png")]
    write_html(results, images, out / "report.html", title=f"rewardflow: {cfg.algo.name} on {cfg.data.task}")


def _open_log(out: Path, resume: bool) -> MetricsLog:
    """A fresh metrics.jsonl, or on resume the existing one without the rows that will be written again: RL rows
    after the last checkpoint (all of them without one), and the SFT rows when the warm-start did not finish."""
    path = out / "metrics.jsonl"
    if not resume:
        return MetricsLog(path)
    step = _resume_step(out)
    log = MetricsLog(path, resume_after=-1 if step is None else step, resume_phase="rl")
    if not (out / "sft" / "DONE").exists():
        log = MetricsLog(path, resume_after=-1, resume_phase="sft")
    return log


def _rl_start(cfg: Config, out: Path) -> Path:
    """RL starts from the finished SFT warm-start, else from model.path or the tiny model built in `out/init`."""
    if (out / "sft" / "DONE").exists():
        return out / "sft"
    return Path(cfg.model.path) if cfg.model.path else out / "init"


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _rl_follower(cfg: Config, out: Path, world: int, *, resume: bool) -> dict:
    """A rank > 0 under torchrun: wait for rank 0's model, warm-start and first evaluation, train RL alongside it
    (it alone logs and checkpoints), wait for its final evaluation, and return its results."""
    torch.manual_seed(cfg.trainer.seed)
    _barrier(world)
    policy, ref, autocast = load_rl_models(cfg, _rl_start(cfg, out), device_for_rank(cfg.model.device))
    scorer = VerifierScorer()
    with autocast:
        train_rl(cfg, policy, ref, make_source(cfg), scorer, out / "rl", log=None, resume=resume)
    scorer.verifier.close()
    _barrier(world)
    return json.loads((out / "results.json").read_text())


def _resume_step(out: Path) -> int | None:
    from ..train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(out / "rl")
    return int(ckpt.name.split("_")[-1]) if ckpt else None
