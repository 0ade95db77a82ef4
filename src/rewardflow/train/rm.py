"""Reward-model training: outcome RMs (pointwise cross-entropy or Bradley-Terry pairs) and process RMs (step
labels), on any backbone `RewardModel.new` accepts. Rows are dicts with "prompt" and "steps" plus
- ORM: "correct" (bool or a [0, 1] label); Bradley-Terry pairs every correct with every wrong solution of the
  same prompt (at most `max_pairs_per_prompt`);
- PRM: "labels", one per step (0/1 or soft).
That is what `rewardflow rm label` writes; `prmbench_train_rows` builds PRM rows from PRMBench's train files.
`train_implicit_prm` trains the implicit PRM (rewards/implicit.py) on the ORM rows' outcome labels.

A held-out tenth of the prompts (by prompt, so no prompt is on both sides) is scored after each epoch:
loss and accuracy land in OUT/metrics.jsonl; the model is saved atomically to OUT at the end.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ..algos.rm import bradley_terry_loss, pointwise_bce_loss, step_bce_loss
from ..data.jsonl import step_list, text_field
from ..optim import check_finite, make_optimizer, mixed_precision, optimizer_step
from ..rewards.implicit import ImplicitPRM
from ..rewards.models import RewardModel

LOSSES = {"orm": ("bce", "bt"), "prm": ("bce",)}


@dataclass
class RMTrainConfig:
    kind: str = "prm"  # orm | prm
    loss: str = "bce"  # orm: bce (pointwise correctness) | bt (Bradley-Terry pairs); prm: bce per step
    epochs: int = 2  # passes over the training rows
    lr: float = 1e-4  # AdamW peak learning rate (linear warmup over the first 5% of steps, then linear decay)
    batch_size: int = 16  # solutions (or pairs) per optimizer step
    max_length: int | None = None  # token limit of prompt + solution (default: the backbone's, at most 2048)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # gradient clipping (the total norm over all parameters)
    max_pairs_per_prompt: int = 8  # Bradley-Terry: cap on correct x wrong pairs drawn from one prompt
    val_frac: float = 0.1  # fraction of prompts held out for the per-epoch validation line
    seed: int = 0
    readout: str = "linear"  # linear (a fresh scalar head) | logprob (the backbone's own LM head; rewards/models.py)
    eval_every: int = 0  # optimizer steps between validations (0: after each epoch)
    dropout: float | None = None  # replaces the backbone's dropout rates (None: keep them; 0 is far faster for BERT-style encoders)
    dtype: str = "float32"  # compute dtype: bfloat16 trains under autocast with fp32 master weights (optim.mixed_precision)
    lora_rank: int = 0  # > 0: train LoRA adapters of this rank on every backbone linear layer, plus the head (0: the whole model)
    patience: int = 0  # early stopping: stop after this many validations without a lower held-out loss, save the best weights (0: off)

    def validate(self) -> None:
        if self.kind not in LOSSES:
            raise ValueError(f"kind: {self.kind!r}; valid: {', '.join(LOSSES)}")
        if self.loss not in LOSSES[self.kind]:
            raise ValueError(f"loss: {self.loss!r} does not train a {self.kind}; valid: {', '.join(LOSSES[self.kind])}")
        if self.epochs < 1 or self.batch_size < 1 or not 0 <= self.val_frac < 1 or min(self.eval_every, self.patience, self.lora_rank) < 0:
            raise ValueError("epochs and batch_size must be >= 1, val_frac in [0, 1), eval_every, patience and lora_rank >= 0")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ValueError(f"max_grad_norm: {self.max_grad_norm}; must be a positive finite number")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype: {self.dtype!r}; valid: float32, bfloat16")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"dropout: {self.dropout}; must be in [0, 1)")
        if self.readout not in ("linear", "logprob"):
            raise ValueError(f"readout: {self.readout!r}; valid: linear, logprob")


def check_rows(rows: list[dict], kind: str, where: str = "rows") -> None:
    """Every row has what its kind trains on; a bad row is named by its position (and id when it has one)."""
    need = ("prompt", "steps", "labels") if kind == "prm" else ("prompt", "steps", "correct")
    for i, r in enumerate(rows):
        missing = [k for k in need if k not in r]
        name = f"{where} row {i + 1}" + (f" (id {r['id']})" if "id" in r else "")
        if missing:
            raise ValueError(f"{name}: missing {', '.join(missing)} (a {kind} trains on {', '.join(need)})")
        try:  # a string where the step list belongs would be split into characters; numbers are taken as text
            r["prompt"], r["steps"] = text_field(r, "prompt"), step_list(r)
        except TypeError as e:
            raise ValueError(f"{name}: {e}") from None
        if not r["steps"]:
            raise ValueError(f"{name}: no steps")
        if kind == "prm" and len(r["labels"]) != len(r["steps"]):
            raise ValueError(f"{name}: {len(r['labels'])} labels for {len(r['steps'])} steps")
        targets = r["labels"] if kind == "prm" else [r["correct"]]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in targets):
            raise ValueError(f"{name}: labels must be finite numbers, got {targets}")


def split_by_prompt(rows: list[dict], val_frac: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out whole questions: rows sharing a "group" (e.g. PRMBench variants of one question, some with a
    rewritten question text) or else a prompt land on the same side."""
    key = lambda r: r.get("group", r["prompt"])
    groups = sorted({key(r) for r in rows})
    random.Random(seed).shuffle(groups)
    held = set(groups[: int(len(groups) * val_frac)])
    return [r for r in rows if key(r) not in held], [r for r in rows if key(r) in held]


def bt_pairs(rows: list[dict], cap: int, seed: int) -> list[tuple[dict, dict]]:
    """(correct, wrong) solution pairs of the same prompt; at most `cap` per prompt, drawn at random."""
    by_prompt: dict[str, list[dict]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt"], []).append(r)
    rng, pairs = random.Random(seed), []
    for group in by_prompt.values():
        good = [r for r in group if float(r["correct"]) > 0.5]
        bad = [r for r in group if float(r["correct"]) <= 0.5]
        combos = [(g, b) for g in good for b in bad]
        rng.shuffle(combos)
        pairs += combos[:cap]
    return pairs


def batch_loss(rm: RewardModel, batch: list, cfg: RMTrainConfig) -> tuple[torch.Tensor, dict]:
    """The loss of one batch of rows (or of (chosen, rejected) pairs for Bradley-Terry)."""
    if cfg.loss == "bt":
        flat = [r for pair in batch for r in pair]  # chosen, rejected, chosen, rejected, ...
        outcome, _ = rm(rm.encode([r["prompt"] for r in flat], [r["steps"] for r in flat]))  # [2P]
        return bradley_terry_loss(outcome[0::2], outcome[1::2])
    enc = rm.encode([r["prompt"] for r in batch], [r["steps"] for r in batch])
    outcome, steps = rm(enc)  # [N], [N, S]
    if cfg.kind == "orm":
        return pointwise_bce_loss(outcome, torch.tensor([float(r["correct"]) for r in batch]))
    labels = torch.zeros_like(steps)  # [N, S]
    for i, r in enumerate(batch):
        labels[i, : len(r["labels"])] = torch.tensor(r["labels"], dtype=labels.dtype)
    return step_bce_loss(steps, labels, (enc.step_pos >= 0) & ~enc.step_cut)  # steps cut off by max_length teach nothing


@torch.no_grad()
def evaluate(rm: RewardModel, items: list, cfg: RMTrainConfig) -> dict:
    rm.eval()
    totals: dict[str, float] = {}
    weight = 0
    for i in range(0, len(items), cfg.batch_size):
        batch = items[i : i + cfg.batch_size]
        loss, stats = batch_loss(rm, batch, cfg)
        n = stats.pop("rm/steps", len(batch))  # a PRM's loss and accuracy are means over steps, an ORM's over solutions
        for k, v in {"loss": loss.item(), **stats}.items():
            totals[k] = totals.get(k, 0.0) + v * n
        weight += n
    rm.train()
    return {f"val/{k.split('/')[-1]}": v / max(1, weight) for k, v in totals.items()} | {"val/n": weight}


class BestWeights:
    """Early stopping on the held-out loss: keeps a copy of the weights at the lowest validation loss so far and
    says when `patience` validations in a row have not improved on it (patience 0: never stops, keeps nothing)."""

    def __init__(self, patience: int):
        self.patience, self.loss, self.step, self.since, self.state, self.stopped = patience, math.inf, 0, 0, None, False

    def update(self, rm: RewardModel, loss: float, step: int) -> bool:
        """Record one validation loss; True when training should stop."""
        if not self.patience:
            return False
        if loss < self.loss:
            self.loss, self.step, self.since = loss, step, 0
            self.state = {k: v.detach().clone() for k, v in rm.state_dict().items()}
        else:
            self.since += 1
        self.stopped = self.since >= self.patience
        return self.stopped


def train_reward_model(init: str | Path, rows: list[dict], out: str | Path, cfg: RMTrainConfig, *, progress=None) -> tuple[RewardModel, list[dict]]:
    """Train a fresh head + backbone from `init` on rows; save to out; return (model, one metrics line per validation).
    Validation runs every `cfg.eval_every` steps (0: after each epoch); with `cfg.patience` the best weights are saved."""
    cfg.validate()
    check_rows(rows, cfg.kind)
    torch.manual_seed(cfg.seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rm = RewardModel.new(init, cfg.kind, max_length=cfg.max_length, readout=cfg.readout, dropout=cfg.dropout)
    if cfg.lora_rank:
        rm.add_lora(cfg.lora_rank, seed=cfg.seed)
    with mixed_precision(rm, cfg.dtype):
        history = _fit(rm, rows, cfg, progress)
    rm.save(out)
    (out / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    (out / "train_config.json").write_text(json.dumps({**cfg.__dict__, "init": str(init), "rows": len(rows)}, indent=2))
    return rm.eval(), history


def _fit(rm: RewardModel, rows: list[dict], cfg: RMTrainConfig, progress) -> list[dict]:
    """The training loop of train_reward_model: returns its metrics lines; leaves the best (or last) weights in rm."""
    train_rows, val_rows = split_by_prompt(rows, cfg.val_frac, cfg.seed)
    items = bt_pairs(train_rows, cfg.max_pairs_per_prompt, cfg.seed) if cfg.loss == "bt" else train_rows
    val_items = bt_pairs(val_rows, cfg.max_pairs_per_prompt, cfg.seed) if cfg.loss == "bt" else val_rows
    if not items:
        raise ValueError("no training examples" + (" (Bradley-Terry needs prompts with both a correct and a wrong solution)" if cfg.loss == "bt" else ""))
    steps_per_epoch = -(-len(items) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    opt, sched = make_optimizer(rm, cfg.lr, cfg.weight_decay, max(1, total // 20), total, "linear")
    rng, history, best, step = random.Random(cfg.seed), [], BestWeights(cfg.patience), 0
    running: dict[str, list[float]] = {}  # train metrics since the last validation
    rm.train()
    for epoch in range(1, cfg.epochs + 1):
        order = list(range(len(items)))
        rng.shuffle(order)
        for s in range(steps_per_epoch):
            step += 1
            loss, stats = batch_loss(rm, [items[i] for i in order[s * cfg.batch_size : (s + 1) * cfg.batch_size]], cfg)
            loss.backward()
            # a nan label (or a diverged step) stops here, before the weights change and long before rm.save
            grad_norm = optimizer_step(rm, opt, sched, max_grad_norm=cfg.max_grad_norm, step=step, losses={"loss/rm": loss.item()})
            for k, v in {"loss": loss.item(), **stats, "grad_norm": grad_norm}.items():
                running.setdefault(f"train/{k.split('/')[-1]}", []).append(v)
            if progress:
                progress(1)
            if not (step % cfg.eval_every == 0 if cfg.eval_every else s + 1 == steps_per_epoch) and step < total:
                continue
            line = {"epoch": epoch, "step": step, **{k: sum(v) / len(v) for k, v in running.items()}}
            running = {}
            if val_items:
                line.update(evaluate(rm, val_items, cfg))
                best.update(rm, line["val/loss"], step)
            history.append(line)
            if best.stopped:
                break
        if best.stopped:
            break
    if best.state is not None:  # the weights of the lowest held-out loss, not the last ones
        rm.load_state_dict(best.state)
        history.append({"best_step": best.step, "best_val_loss": best.loss})
    return history


def deepen_backbone(init: str | Path, extra_layers: int, out: str | Path, *, seed: int = 0) -> Path:
    """A reward-model backbone deeper than its policy: the policy's decoder checkpoint `init` with `extra_layers`
    new transformer blocks on top; saved (with the tokenizer) to `out`, a directory RewardModel.new takes as init.

    Why: the policy's last layer ends in its next-token prediction, so at a step's last token the prediction made
    for each written digit sits in the hidden states of earlier positions; comparing it with the digit actually
    written needs attention over those final states, i.e. layers after the policy's. Each new block starts as the
    identity (its attention output and MLP down projections are zero), so training starts from the policy's own
    features. Llama-style decoders (model.layers[i].self_attn.o_proj, .mlp.down_proj) only."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..rewards.models import resolve_init

    if extra_layers < 1:
        raise ValueError(f"extra_layers: {extra_layers}; must be >= 1")
    path = resolve_init(init)
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    config = policy.config
    n = config.num_hidden_layers
    config.num_hidden_layers = n + extra_layers
    if isinstance(getattr(config, "layer_types", None), list):  # per-layer attention kinds: the new ones repeat the last
        config.layer_types = config.layer_types + [config.layer_types[-1]] * extra_layers
    torch.manual_seed(seed)
    deep = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = deep.load_state_dict(policy.state_dict(), strict=False)
    layers = getattr(getattr(deep, "model", None), "layers", None)
    if unexpected or layers is None or any(not k.startswith("model.layers.") or int(k.split(".")[2]) < n for k in missing) \
            or not all(hasattr(b, "self_attn") and hasattr(b.self_attn, "o_proj") and hasattr(b, "mlp") for b in layers):
        raise ValueError(f"{path}: deepening needs a Llama-style decoder (model.layers[i].self_attn.o_proj, .mlp.down_proj)")
    with torch.no_grad():
        for block in layers[n:]:
            block.self_attn.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()
    out = Path(out)
    deep.save_pretrained(out)
    AutoTokenizer.from_pretrained(path).save_pretrained(out)
    return out


def steps_total(rows: list[dict], cfg: RMTrainConfig) -> int:
    """Optimizer steps a run will take (for a progress bar), before the validation split."""
    train_rows = split_by_prompt(rows, cfg.val_frac, cfg.seed)[0]
    n = len(bt_pairs(train_rows, cfg.max_pairs_per_prompt, cfg.seed)) if cfg.loss == "bt" else len(train_rows)
    return -(-n // cfg.batch_size) * cfg.epochs


def prmbench_train_rows(data_dir: str | Path, *, with_originals: bool = True) -> list[dict]:
    """PRM rows from PRMBench's `*_train_*` files (Song et al. 2025): the modified process with label 1 before its
    first `error_steps` entry (1-based) and 0 from it on (rows whose error steps all lie past their last step are
    left out); plus, once per question, the original process with all 1s. Test files are never read: they are
    what the benchmark evaluates.

    Why 0 after the first error, though PRMBench marks later steps that merely build on it as unerring: a causal PRM's
    score at step k answers "is the solution still sound after step k" (Math-Shepherd's hard label: a step after a
    mistake cannot lead to a sound solution), and ProcessBench asks for exactly the first step where that flips.
    Labelling the steps after an error 1 asks it to forget an error it can still see."""
    from ..data.jsonl import read_rows

    files = sorted(Path(data_dir).glob("*_train_*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{data_dir}: no PRMBench *_train_*.jsonl files")
    def parse(r: dict) -> dict:
        steps = [str(x) for x in r["modified_process"]]
        first = min((int(e) for e in r["error_steps"]), default=len(steps) + 1)  # 1-based
        return {"id": f"{r['idx']}:{r['classification']}", "group": r["idx"], "prompt": r.get("modified_question") or r["question"], "steps": steps,
                "labels": [1.0 if k + 1 < first else 0.0 for k in range(len(steps))],
                "original": (r["original_question"], [str(x) for x in r["original_process"]])}

    rows, seen = [], set()
    for f in files:
        for _, row in read_rows(f, parse, what="PRMBench row"):
            question, original = row.pop("original")
            if 0.0 in row["labels"]:  # 12 train rows name an error step past their last step: no step to label 0
                rows.append(row)
            if with_originals and question not in seen:  # each class file repeats the same originals
                seen.add(question)
                rows.append({"id": row["group"] + ":original", "group": row["group"], "prompt": question, "steps": original,
                             "labels": [1.0] * len(original)})
    return rows


def train_implicit_prm(model_dir: str | Path, rows: list[dict], out: str | Path, *, beta: float = 0.05, epochs: int = 1,
                       lr: float = 1e-5, batch_size: int = 8, seed: int = 0, progress=None, **kw) -> ImplicitPRM:
    """Train an implicit PRM from `model_dir` on outcome labels only (Yuan et al. 2024, CE objective).

    rows: dicts with "prompt", "steps" and "correct" (bool or 0/1), e.g. the rows of a labels file
    (rewards/label.py); step labels, if present, are ignored. Batches are shuffled with `seed`; each batch is
    one `update`. Saved atomically to `out`. `progress(n, **fields)` is ticked per batch; `kw` (device,
    dtype) go to HFPolicy.from_pretrained.
    """
    check_rows(rows, "orm")  # outcome labels: prompt, steps, correct
    prm = ImplicitPRM.from_pretrained(model_dir, beta=beta, lr=lr, **kw)
    gen = torch.Generator().manual_seed(seed)
    step = 0
    for _ in range(epochs):
        for idx in torch.randperm(len(rows), generator=gen).split(batch_size):
            step += 1
            batch = [rows[int(i)] for i in idx]
            stats = prm.update_prompts([r["prompt"] for r in batch], [list(r["steps"]) for r in batch],
                                       [float(r["correct"]) for r in batch])
            # ImplicitPRM steps itself (rewards/ cannot import train/'s optimizer_step): a nan is caught just after
            # its step, still before prm.save, so no nan weights are written
            check_finite({k: v for k, v in stats.items() if k.startswith("loss/") or k.endswith("grad_norm")}, step=step)
            if progress is not None:
                progress(len(batch), loss=stats["loss/implicit_ce"], acc=stats["prm/accuracy"])
    prm.save(out)
    return prm
