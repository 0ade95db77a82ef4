"""The end-to-end job behind `rewardflow quickstart` and `rewardflow train`:
model -> SFT warm-start on worked solutions -> eval -> GRPO -> eval -> results.json, plots, report.html.

Each stage leaves its output in the run directory, so `--resume` skips finished stages and continues RL
from its last checkpoint.

Under torchrun (`torchrun --nproc_per_node K -m rewardflow.cli train ...`) rank 0 runs every stage and writes
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
from .config_loader import ConfigError, to_dict
from ..data import GymSource, load_jsonl, worked_solution
from ..data.jsonl import ListSource
from ..distributed.ddp import device_for_rank, init_distributed
from ..eval.report import plot_pass_at_k, plot_rl_curves, write_html
from ..eval.runner import evaluate_policy
from ..policy.hf import HFPolicy
from ..policy.tiny import TinyModelConfig, make_tiny_checkpoint
from ..progress import progress_bars
from ..rewards.verifier import VerifierScorer
from ..train.metrics import MetricsLog
from ..train.rl import train_rl
from ..train.sft import run_sft

SFT_OFFSET = 5_000_000  # SFT reads the training stream from here, RL from 0: no problem is used twice


def make_source(cfg: Config):
    d = cfg.data
    if d.task.endswith(".jsonl"):
        eval_problems = load_jsonl(d.eval_path, limit=d.eval_size) if d.eval_path else []
        return ListSource(load_jsonl(d.task), eval_problems)
    source = GymSource(d.task, seed=cfg.trainer.seed, eval_size=d.eval_size, **d.task_kwargs)
    if d.eval_path:
        source.eval_problems = load_jsonl(d.eval_path, limit=d.eval_size)
    return source




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
    eval_problems = source.eval_problems
    scorer = VerifierScorer()
    e = cfg.eval
    eval_kw = dict(n_samples=e.n_samples, ks=e.ks, temperature=e.temperature, max_new_tokens=e.max_new_tokens, greedy=e.greedy, seed=cfg.trainer.seed)
    log = MetricsLog(out / "metrics.jsonl", resume_after=_resume_step(out) if resume else None)
    (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))

    with progress_bars(show_progress) as bar:
        # 1. the starting model: a local checkpoint, or a tiny model built from the config
        sft_dir = out / "sft"
        if cfg.model.path:
            init = Path(cfg.model.path)
        else:
            m = cfg.model
            # the tokenizer learns its words from training prompts and worked solutions (never eval data)
            sample = source.train_problems(range(SFT_OFFSET - 2000, SFT_OFFSET))
            corpus = [p.prompt for p in sample] + ([worked_solution(p) for p in sample] if cfg.sft.steps > 0 else [])
            init = make_tiny_checkpoint(out / "init", TinyModelConfig(m.hidden_size, m.layers, m.heads, m.intermediate_size, m.max_positions, cfg.trainer.seed), corpus)
        dtype = getattr(torch, cfg.model.dtype)
        # 2. supervised warm-start on worked solutions (skipped when already done, or sft.steps=0)
        if cfg.sft.steps > 0 and not (resume and (sft_dir / "DONE").exists()):
            policy = HFPolicy.from_pretrained(init, device=device, dtype=dtype)
            s = cfg.sft
            _check_worked_solutions(source, cfg)

            def examples(step: int) -> list[tuple[str, str]]:
                first = SFT_OFFSET + step * s.batch_size
                batch = source.train_problems(range(first, first + s.batch_size))
                # A share of examples answers directly, without working: the warm-started policy then mixes
                # both habits, and RL has to discover from reward alone that working step by step pays.
                return [(p.prompt, worked_solution(p, direct=_is_direct(first + i, s.direct_frac))) for i, p in enumerate(batch)]

            run_sft(policy, examples, steps=s.steps, lr=s.lr, warmup_steps=s.warmup_steps, weight_decay=s.weight_decay,
                    log=log, progress=bar("SFT warm-start", s.steps))
            policy.model.save_pretrained(sft_dir)
            policy.tokenizer.save_pretrained(sft_dir)
            (sft_dir / "DONE").touch()
        start = _rl_start(cfg, out)
        policy = HFPolicy.from_pretrained(start, device=device, dtype=dtype)

        # 3. evaluate the RL starting point
        results: dict = {"task": cfg.data.task, "model": {"params": policy.num_params, "path": str(cfg.model.path or init)}}
        if resume and (out / "eval_sft.json").exists():
            results["sft"] = json.loads((out / "eval_sft.json").read_text())
        else:
            results["sft"] = evaluate_policy(policy, scorer.verifier, eval_problems, progress=bar("eval before RL", len(eval_problems)), **eval_kw)
            write_json(out / "eval_sft.json", results["sft"])

        # 4. RL with verifiable rewards, with a small periodic held-out evaluation for the curves
        ref = HFPolicy.from_pretrained(start, device=device, dtype=dtype) if cfg.algo.kl_coef > 0 else None
        subset = eval_problems[: cfg.trainer.eval_problems]

        def periodic(step: int) -> dict:
            res = evaluate_policy(policy, scorer.verifier, subset, n_samples=4, ks=[1], temperature=e.temperature,
                                  max_new_tokens=e.max_new_tokens, greedy=True, seed=cfg.trainer.seed + step)
            return {"pass@1": res["pass@1"], "greedy": res["greedy"]}

        if not resume or _resume_step(out) is None:
            log.log(0, {f"eval/{k}": v for k, v in periodic(0).items()})
        _barrier(world)  # the other ranks may now load `start` and join RL
        train_rl(cfg, policy, ref, source, scorer, out / "rl", log=log, resume=resume, evaluate=periodic,
                 progress=bar(f"RL ({cfg.algo.name})", cfg.trainer.steps))

        # 5. evaluate the trained policy with the same samples budget and seed
        results["rl"] = evaluate_policy(policy, scorer.verifier, eval_problems, progress=bar("eval after RL", len(eval_problems)), **eval_kw)
    results["wall_seconds"] = time.perf_counter() - t_start  # this invocation only (a resumed run counts its own part)
    results["resumed"] = resume
    results["delta"] = {k: results["rl"][k] - results["sft"][k] for k in ("pass@1", "greedy", f"maj@{max(e.ks)}") if k in results["rl"]}
    results["algo"] = cfg.algo.name
    write_json(out / "results.json", results)
    images = [plot_rl_curves(log.read(), out / "rl_curves.png"), plot_pass_at_k({"after SFT": results["sft"], "after RL": results["rl"]}, list(e.ks), out / "pass_at_k.png")]
    write_html(results, images, out / "report.html", title=f"rewardflow: {cfg.algo.name} on {cfg.data.task}")
    scorer.verifier.close()
    _barrier(world)  # results.json is written: the other ranks may return it
    return results


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
    device, dtype, start = device_for_rank(cfg.model.device), getattr(torch, cfg.model.dtype), _rl_start(cfg, out)
    policy = HFPolicy.from_pretrained(start, device=device, dtype=dtype)
    ref = HFPolicy.from_pretrained(start, device=device, dtype=dtype) if cfg.algo.kl_coef > 0 else None
    scorer = VerifierScorer()
    train_rl(cfg, policy, ref, make_source(cfg), scorer, out / "rl", log=None, resume=resume)
    scorer.verifier.close()
    _barrier(world)
    return json.loads((out / "results.json").read_text())


def _check_worked_solutions(source, cfg: Config) -> None:
    try:
        worked_solution(source.train_problems([SFT_OFFSET])[0])
    except (ValueError, KeyError) as e:
        raise ConfigError(f"sft.steps={cfg.sft.steps}: warm-start needs worked solutions, which exist for arithmetic chains "
                          f"(chain_sum), not for data.task={cfg.data.task!r}; set sft.steps=0 and start from model.path") from e


def _is_direct(index: int, frac: float) -> bool:
    """Deterministic, evenly spread choice of `frac` of the indices (golden-ratio sequence)."""
    return (index * 0.6180339887498949) % 1.0 < frac


def _resume_step(out: Path) -> int | None:
    from ..train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(out / "rl")
    return int(ckpt.name.split("_")[-1]) if ckpt else None
