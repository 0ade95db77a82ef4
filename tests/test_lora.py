"""LoRA (policy/lora.py): the merged weights worked by hand, checkpoints plain transformers loads, the frozen base
as the KL reference, only adapters training, resume from the adapter, mixed precision, and (when installed) a
1-step LoRA GRPO run on SmolLM2-135M-Instruct."""
import contextlib

import pytest
import torch

pytest.importorskip("peft")

from rewardflow.config import LoRAConfig, ModelConfig  # noqa: E402
from rewardflow.data import GymSource  # noqa: E402
from rewardflow.optim import make_optimizer, mixed_precision  # noqa: E402
from rewardflow.policy import lora  # noqa: E402
from rewardflow.policy.hf import HFPolicy  # noqa: E402
from rewardflow.policy.tiny import TinyModelConfig, make_tiny_checkpoint  # noqa: E402
from rewardflow.recipes.config_loader import ConfigError, load_config  # noqa: E402
from rewardflow.train.checkpoint import latest_checkpoint  # noqa: E402
from rewardflow.train.metrics import MetricsLog  # noqa: E402
from rewardflow.train.rl import train_rl  # noqa: E402
from scorers import DigitScorer as _DigitScorer

SMALL = TinyModelConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64)
OVERRIDES = ["rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=10", "trainer.save_every=1",
             "trainer.eval_every=0", "trainer.micro_batch_size=8", "algo.kl_coef=0.05", "trainer.lr=5e-2",
             "model.lora.rank=4", "model.lora.alpha=8"]


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("lora_init"), SMALL)


def _lora_policy(path, rank=4, alpha=8.0, targets=("q_proj", "v_proj")):
    policy = HFPolicy.from_pretrained(path)
    lora.prepare_model(policy, ModelConfig(lora=LoRAConfig(rank=rank, alpha=alpha, targets=list(targets))))
    return policy


def _perturb_adapters(model, seed=0):
    """B starts at zero (the adapter is a no-op at init): give it values so merged and base differ."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def test_merged_weight_by_hand(small_ckpt):
    # rank 1, alpha 2: scale = alpha / r = 2. With A = [1, 0, ..., 0] (1 x 32) and B = [0.5, 0, ..., 0]^T (d_out x 1)
    # the update B @ A has one non-zero entry, (0, 0) = 0.5 * 1 = 0.5, so W'[0, 0] = W[0, 0] + 2 * 0.5 = W[0, 0] + 1
    # and every other entry of W' equals W.
    policy = _lora_policy(small_ckpt, rank=1, alpha=2.0, targets=("q_proj",))
    layer = lora.lora_layers(policy.model)["model.layers.0.self_attn.q_proj"]
    with torch.no_grad():
        layer.lora_A["default"].weight.zero_()[0, 0] = 1.0
        layer.lora_B["default"].weight.zero_()[0, 0] = 0.5
    w = layer.base_layer.weight.detach().clone()
    merged = lora.merged_state_dict(policy.model)["model.layers.0.self_attn.q_proj.weight"]
    expected = w.clone()
    expected[0, 0] += 1.0
    assert torch.equal(merged, expected)
    assert not any(".lora_" in k or ".base_layer." in k for k in lora.merged_state_dict(policy.model))


def test_checkpoint_loads_as_plain_model_with_adapter(small_ckpt, tmp_path):
    from transformers import AutoModelForCausalLM

    policy = _lora_policy(small_ckpt)
    _perturb_adapters(policy.model)
    lora.save_policy(policy, tmp_path / "ckpt")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    assert not lora.is_lora(plain)
    assert (tmp_path / "ckpt" / "adapter" / "adapter_model.safetensors").is_file()
    batch = policy.token_batch([[5, 6, 7, 8]], [[9, 10, 11]])
    with torch.no_grad():
        lora_lp = policy.logprobs(batch).logprobs
        plain_lp = HFPolicy(plain, policy.tokenizer).logprobs(batch).logprobs
        base_lp = HFPolicy.from_pretrained(small_ckpt).logprobs(batch).logprobs
    torch.testing.assert_close(plain_lp, lora_lp, atol=1e-5, rtol=0)  # the merged model is the adapted model
    assert (lora_lp - base_lp).abs().max() > 1e-3  # ... and not the base (the adapters did something)
    # the adapter loads back into a fresh LoRA policy (what --resume does)
    fresh = _lora_policy(small_ckpt)
    lora.load_weights(fresh, tmp_path / "ckpt")
    with torch.no_grad():
        torch.testing.assert_close(fresh.logprobs(batch).logprobs, lora_lp, atol=1e-6, rtol=0)


def test_frozen_base_reference_is_the_base_and_no_copy(small_ckpt):
    policy = _lora_policy(small_ckpt)
    _perturb_adapters(policy.model)
    ref = lora.reference_for(policy, lambda: pytest.fail("a LoRA policy must not load a second copy"))
    batch = policy.token_batch([[5, 6, 7]], [[8, 9]])
    with torch.no_grad():
        base = HFPolicy.from_pretrained(small_ckpt).logprobs(batch).logprobs
        ref_lp = ref.logprobs(batch).logprobs
        ref_fw = ref.model(input_ids=batch.input_ids).logits
        pol_lp = policy.logprobs(batch).logprobs
    torch.testing.assert_close(ref_lp, base, atol=1e-6, rtol=0)
    assert (pol_lp - base).abs().max() > 1e-3  # adapters are back on after the reference's call
    assert ref.model.config is policy.model.config  # attributes are the one model's
    plain_logits = HFPolicy.from_pretrained(small_ckpt).model(input_ids=batch.input_ids).logits
    torch.testing.assert_close(ref_fw, plain_logits, atol=1e-5, rtol=0)
    plain = HFPolicy.from_pretrained(small_ckpt)
    assert lora.reference_for(plain, lambda: "copy") == "copy"


def test_only_adapters_train(small_ckpt):
    policy = _lora_policy(small_ckpt)
    opt, _ = make_optimizer(policy.model, 1e-2, 0.0, 0, 1)
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    # rank 4 on q_proj and v_proj (32 -> 32 each) in 2 layers: (4*32 + 32*4) * 2 modules * 2 layers = 1024
    assert n_opt == 1024
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    batch = policy.token_batch([[5, 6, 7]], [[8, 9]])
    policy.model.train()
    (-policy.logprobs(batch).logprobs.sum()).backward()
    opt.step()
    after = policy.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # B = 0 at init, so d(B A x)/dA = B^T (...) = 0 while d/dB = (...) (A x)^T != 0: the first step moves B only,
    # and no base weight moves at all
    assert changed and all(".lora_B." in k for k in changed)


def test_mixed_precision_keeps_fp32_master_weights(small_ckpt):
    policy = HFPolicy.from_pretrained(small_ckpt, dtype=torch.bfloat16)
    autocast = mixed_precision(policy.model)
    assert all(p.dtype == torch.float32 for p in policy.model.parameters())
    opt, _ = make_optimizer(policy.model, 1e-3, 0.0, 0, 1)
    batch = policy.token_batch([[5, 6, 7]], [[8, 9]])
    with autocast:
        hidden = policy.model.model(input_ids=batch.input_ids).last_hidden_state
        lin = policy.model.model.layers[0].self_attn.q_proj(hidden)
        loss = -policy.logprobs(batch).logprobs.sum()
    assert lin.dtype == torch.bfloat16  # matmuls run in bf16 under autocast
    loss.backward()
    opt.step()
    assert all(s["exp_avg"].dtype == torch.float32 for s in opt.state.values())
    q_proj = policy.model.model.layers[0].self_attn.q_proj
    x = torch.randn(1, q_proj.in_features)
    with autocast:  # one context over many steps, as a training run holds it: a forward reads the updated weights
        before = q_proj(x)
        with torch.no_grad():
            q_proj.weight.add_(1.0)
        assert not torch.equal(q_proj(x), before)  # autocast's weight cache would give the first bf16 copy again
    assert isinstance(mixed_precision(policy.model, "float32"), contextlib.nullcontext)  # fp32: no autocast at all


def test_config_validates_lora_fields(small_ckpt):
    for override, field in [("model.lora.rank=-1", "model.lora.rank"), ("model.lora.alpha=0", "model.lora.alpha"),
                            ("model.lora.dropout=1.0", "model.lora.dropout"), ("model.dtype=float16", "model.dtype")]:
        with pytest.raises(ConfigError, match=field):
            load_config(overrides=[override])
    with pytest.raises(ConfigError, match="model.backend=vllm"):  # the engine would get unmerged adapter names
        load_config(overrides=["model.lora.rank=8", "model.backend=vllm"])
    with pytest.raises(ValueError, match="nope"):
        _lora_policy(small_ckpt, targets=("nope",))


def _rl(tmp, init, steps, *, resume=False, run="run"):
    from rewardflow.recipes.pipeline import load_rl_models

    cfg = load_config(overrides=OVERRIDES + [f"trainer.steps={steps}"])
    policy, ref, autocast = load_rl_models(cfg, init, "cpu")
    source = GymSource("chain_sum", seed=0, eval_size=8, min_terms=2, max_terms=2, min_digits=1, max_digits=1)
    ckpt = latest_checkpoint(tmp / run) if resume else None
    log = MetricsLog(tmp / run / "metrics.jsonl", resume_after=int(ckpt.name.split("_")[-1]) if ckpt else None)
    with autocast:
        train_rl(cfg, policy, ref, source, _DigitScorer(), tmp / run, log=log, resume=resume)
    return policy, ref


def test_lora_grpo_checkpoint_and_resume(small_ckpt, tmp_path):
    from transformers import AutoModelForCausalLM

    straight, ref = _rl(tmp_path, small_ckpt, 2, run="straight")
    assert isinstance(ref, lora.FrozenBaseReference)
    ckpt = latest_checkpoint(tmp_path / "straight")
    plain = AutoModelForCausalLM.from_pretrained(ckpt)
    merged = lora.merged_state_dict(straight.model)
    assert all(torch.equal(plain.state_dict()[k], merged[k]) for k in plain.state_dict())
    base = AutoModelForCausalLM.from_pretrained(small_ckpt).state_dict()
    assert any(not torch.equal(plain.state_dict()[k], base[k]) for k in base), "training changed nothing"
    # stop after 1 step and resume from the adapter: the same adapter weights as the straight run
    _rl(tmp_path, small_ckpt, 1, run="split")
    torch.manual_seed(999)
    resumed, _ = _rl(tmp_path, small_ckpt, 2, resume=True, run="split")
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_gradient_checkpointing_same_gradient(small_ckpt):
    def grads(gc: bool):
        policy = _lora_policy(small_ckpt)
        _perturb_adapters(policy.model)
        if gc:
            lora.prepare_model(policy, ModelConfig(gradient_checkpointing=True, lora=LoRAConfig(rank=4)))
        policy.model.train()
        batch = policy.token_batch([[5, 6, 7]], [[8, 9, 10]])
        (-policy.logprobs(batch).logprobs.sum()).backward()
        return {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.requires_grad}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and any(g.abs().sum() > 0 for g in plain.values())
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_smollm2_one_step_lora_grpo_writes_full_merged_model(tmp_path):
    from rewardflow.policy.resolve import resolve_model

    try:
        path = resolve_model("smollm2-135m-instruct")
    except Exception as e:  # the smol extra (93 MB) is not installed: CI never needs it
        pytest.skip(f"SmolLM2-135M-Instruct not installed: {e}")
    from transformers import AutoModelForCausalLM

    cfg = load_config(overrides=["rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=8",
                                 "trainer.steps=1", "trainer.eval_every=0", "algo.kl_coef=0.01", "model.lora.rank=8",
                                 "model.gradient_checkpointing=true", "model.dtype=bfloat16"])
    from rewardflow.recipes.pipeline import load_rl_models

    policy, ref, autocast = load_rl_models(cfg, path, "cpu")
    source = GymSource("chain_sum", seed=0, eval_size=4, min_terms=2, max_terms=2, min_digits=1, max_digits=1)
    with autocast:
        train_rl(cfg, policy, ref, source, _DigitScorer(), tmp_path / "run", log=MetricsLog(tmp_path / "m.jsonl"))
    model = AutoModelForCausalLM.from_pretrained(latest_checkpoint(tmp_path / "run"))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000


def test_dpo_with_lora_reference_is_the_frozen_base(small_ckpt):
    from rewardflow.config import PreferenceConfig
    from rewardflow.train.preference import Pair, train_pairs

    policy = _lora_policy(small_ckpt)
    ref = lora.reference_for(policy, lambda: pytest.fail("no second copy under LoRA"))
    pairs = [Pair("1+1=", "2", "3"), Pair("2+2=", "4", "5")]
    pc = PreferenceConfig(loss="dpo", beta=0.1, lr=5e-2, epochs=3, batch_size=2)
    history = train_pairs(policy, ref, pairs, pc, seed=0)
    # B = 0 at init, so the policy equals its frozen base: every log-ratio is 0 and the first DPO loss is
    # -log sigmoid(beta * (0 - 0)) = log 2 = 0.693147...
    assert history[0]["loss/pref"] == pytest.approx(0.6931471805599453, abs=1e-6)
    assert history[-1]["loss/pref"] < history[0]["loss/pref"]  # the adapters learned the preference
    batch = policy.token_batch([[5, 6, 7]], [[8, 9]])
    with torch.no_grad():
        base = HFPolicy.from_pretrained(small_ckpt).logprobs(batch).logprobs
        torch.testing.assert_close(ref.logprobs(batch).logprobs, base, atol=1e-6, rtol=0)  # the reference never moved
