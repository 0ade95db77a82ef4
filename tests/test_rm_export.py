"""Our trained ORM / PRM saved as transformers classification checkpoints: plain transformers loads them and
its logits, read where scorer.json says, give our scores; load_scorer reads them (and the older layout) back."""
import json

import pytest
import torch

from rewardflow.data.problem import Problem
from rewardflow.rewards.models import RewardModel
from rewardflow.rewards.registry import load_scorer

P = Problem(id="a", prompt="What is 3 + 4?", answer="7", task="t", meta={})
SOLS = [["3 + 4 = 7", "Answer: 7"], ["3 + 4 = 9", "so the sum is 9", "Answer: 9"]]


def _randomise(rm: RewardModel, seed: int = 0) -> RewardModel:
    """A non-zero head (and bias) so that scores differ between tokens and a dropped bias would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        rm.head.weight.copy_(torch.randn(rm.head.weight.shape, generator=g))
        rm.head.bias.fill_(0.75)
    return rm.eval()


def test_prm_is_a_token_classification_checkpoint(tiny_ckpt, tmp_path):
    from transformers import AutoModelForTokenClassification

    rm = _randomise(RewardModel.new(tiny_ckpt, "prm"))
    ours = rm.score([P, P], SOLS)
    rm.save(tmp_path / "prm")
    meta = json.loads((tmp_path / "prm" / "scorer.json").read_text())
    assert meta["kind"] == "prm" and meta["head"] == "token" and meta["logit_bias"] == 0.0  # the token head has a bias
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path / "prm").eval()
    assert type(plain).__name__ == "LlamaForTokenClassification" and plain.config.num_labels == 1
    for sol, mine in zip(SOLS, ours):
        enc = rm.encode([P.prompt], [sol])  # where each step ends (our encoder; the text format is in scorer.json)
        with torch.no_grad():
            logits = plain(input_ids=enc.input_ids).logits[0, :, 0]  # [L]
        step_scores = torch.sigmoid(logits[enc.step_pos[0]]).tolist()
        assert step_scores == pytest.approx(mine.steps, abs=1e-5)
    back = load_scorer(str(tmp_path / "prm"))
    again = back.score([P, P], SOLS)
    assert [x for s in again for x in s.steps] == pytest.approx([x for s in ours for x in s.steps], abs=1e-6)


def test_decoder_orm_is_a_sequence_classification_checkpoint(tiny_ckpt, tmp_path):
    from transformers import AutoModelForSequenceClassification

    rm = _randomise(RewardModel.new(tiny_ckpt, "orm"), seed=1)
    ours = [s.outcome for s in rm.score([P, P], SOLS)]
    assert abs(ours[0] - ours[1]) > 1e-4  # two solutions the model tells apart
    rm.save(tmp_path / "orm")
    meta = json.loads((tmp_path / "orm" / "scorer.json").read_text())
    # transformers' sequence head has no bias: ours rides in scorer.json
    assert meta["head"] == "sequence" and meta["logit_bias"] == pytest.approx(0.75)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "orm").eval()
    enc = rm.encode([P.prompt, P.prompt], SOLS)  # right-padded with the tokenizer's pad id (config.pad_token_id)
    with torch.no_grad():
        pooled = plain(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits[:, 0]  # [2]
    assert torch.sigmoid(pooled + meta["logit_bias"]).tolist() == pytest.approx(ours, abs=1e-5)
    # the bias moves every logit alike: plain transformers ranks the solutions as we do
    assert (pooled[0] > pooled[1]).item() == (ours[0] > ours[1])
    assert [s.outcome for s in load_scorer(str(tmp_path / "orm")).score([P, P], SOLS)] == pytest.approx(ours, abs=1e-6)


def _tiny_bert(tmp_path):
    from transformers import BertConfig, BertModel

    from test_rewards_models import _char_wordpiece

    fast, V = _char_wordpiece()
    BertModel(BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=128)).save_pretrained(tmp_path / "bert")
    fast.save_pretrained(tmp_path / "bert")
    return tmp_path / "bert"


@pytest.mark.parametrize("kind", ["prm", "orm"])
def test_encoder_reward_models_export_as_token_classification(tmp_path, kind):
    from transformers import AutoModelForTokenClassification

    rm = _randomise(RewardModel.new(_tiny_bert(tmp_path), kind), seed=2)
    sols = [["3+4=7", "answer: 7"], ["3+4=9", "answer: 9"]]
    p = Problem(id="a", prompt="what is 3+4?", answer="7", task="t", meta={})
    ours = rm.score([p, p], sols)
    rm.save(tmp_path / kind)
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path / kind).eval()
    assert plain.config.is_decoder == (kind == "prm")  # a PRM keeps its causal mask outside rewardflow too
    enc = rm.encode([p.prompt] * 2, sols)
    with torch.no_grad():
        logits = plain(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits[..., 0]  # [2, L]
    if kind == "prm":
        got = torch.sigmoid(logits.gather(1, enc.step_pos)).flatten().tolist()
        assert got == pytest.approx([x for s in ours for x in s.steps], abs=1e-5)
    else:
        got = torch.sigmoid(logits.gather(1, enc.last[:, None])).flatten().tolist()
        assert got == pytest.approx([s.outcome for s in ours], abs=1e-5)
    again = load_scorer(str(tmp_path / kind)).score([p, p], sols)
    assert [s.outcome for s in again] == pytest.approx([s.outcome for s in ours], abs=1e-6)


def test_the_older_layout_still_loads(tiny_ckpt, tmp_path):
    """backbone/ + head.safetensors + scorer.json, as rewardflow wrote reward models before this layout."""
    from safetensors.torch import save_file

    rm = _randomise(RewardModel.new(tiny_ckpt, "prm"), seed=3)
    old = tmp_path / "old"
    rm.backbone.save_pretrained(old / "backbone")
    rm.tokenizer.save_pretrained(old / "backbone")
    save_file({k: v.contiguous() for k, v in rm.head.state_dict().items()}, str(old / "head.safetensors"))
    (old / "scorer.json").write_text(json.dumps({"kind": "prm", "max_length": rm.max_length, "causal": True, "init": "x"}))
    back = load_scorer(str(old))
    assert [x for s in back.score([P, P], SOLS) for x in s.steps] == pytest.approx([x for s in rm.score([P, P], SOLS) for x in s.steps], abs=1e-6)


def test_trained_prm_loads_in_plain_transformers(tiny_ckpt, tmp_path):
    """`rm train`'s output directory is the classification checkpoint (train_reward_model saves it)."""
    from transformers import AutoModelForTokenClassification

    from rewardflow.train.rm import RMTrainConfig, train_reward_model

    rows = [{"prompt": f"Q{i}", "steps": ["1 + 1 = 2", "Answer: 2"], "labels": [1.0, float(i % 2)]} for i in range(8)]
    rm, _ = train_reward_model(tiny_ckpt, rows, tmp_path / "prm", RMTrainConfig(kind="prm", epochs=1, batch_size=4, val_frac=0.0))
    assert (tmp_path / "prm" / "model.safetensors").is_file() and not (tmp_path / "prm" / "backbone").exists()
    plain = AutoModelForTokenClassification.from_pretrained(tmp_path / "prm")
    trained = dict(rm.backbone.named_parameters())
    for name, param in plain.base_model.named_parameters():
        assert torch.equal(param, trained[name]), name


def test_a_backbone_without_a_classification_class_keeps_the_backbone_and_head_layout(tmp_path):
    """OPT has no *ForTokenClassification: a PRM on it is saved as backbone/ + head.safetensors and loads back."""
    from transformers import OPTConfig, OPTForCausalLM

    from rewardflow.policy.tiny import build_char_tokenizer

    tok = build_char_tokenizer()
    OPTForCausalLM(OPTConfig(vocab_size=len(tok), hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2,
                             word_embed_proj_dim=32, max_position_embeddings=256, pad_token_id=tok.pad_token_id)).save_pretrained(tmp_path / "opt")
    tok.save_pretrained(tmp_path / "opt")
    rm = _randomise(RewardModel.new(tmp_path / "opt", "prm"), seed=4)
    rm.save(tmp_path / "prm")
    assert (tmp_path / "prm" / "backbone" / "config.json").is_file() and (tmp_path / "prm" / "head.safetensors").is_file()
    assert json.loads((tmp_path / "prm" / "scorer.json").read_text())["layout"] == "backbone+head"
    back = load_scorer(str(tmp_path / "prm"))
    assert [x for s in back.score([P, P], SOLS) for x in s.steps] == pytest.approx([x for s in rm.score([P, P], SOLS) for x in s.steps], abs=1e-6)


def test_a_lora_reward_model_trains_adapters_and_head_only_and_saves_them_merged(tiny_ckpt, tmp_path):
    from rewardflow.rewards.models import RewardModel
    from rewardflow.train.rm import RMTrainConfig, train_reward_model

    rows = [{"prompt": f"Q{i}", "steps": ["1 + 1 = 2", "Answer: 2"], "labels": [1.0, float(i % 2)]} for i in range(8)]
    base = RewardModel.new(tiny_ckpt, "prm").backbone.state_dict()
    cfg = RMTrainConfig(kind="prm", epochs=2, lr=1e-2, batch_size=4, val_frac=0.0, lora_rank=4)
    rm, _ = train_reward_model(tiny_ckpt, rows, tmp_path / "prm", cfg)
    live = {k.replace(".base_layer.", "."): v for k, v in rm.backbone.state_dict().items() if ".lora_" not in k}
    assert live.keys() == base.keys() and all(torch.equal(live[k], base[k]) for k in base)  # the base stayed frozen
    merged = rm.backbone_state()
    moved = [k for k in base if not torch.equal(merged[k], base[k])]
    assert moved and all(k.endswith(".weight") and "proj" in k for k in moved)  # the adapters learned, in linear layers only
    loaded = RewardModel.load(tmp_path / "prm")  # a plain checkpoint: no adapter tensors, and it scores as the live model
    assert not any(".lora_" in k for k in loaded.backbone.state_dict())
    assert [x for s in loaded.score([P, P], SOLS) for x in s.steps] == pytest.approx([x for s in rm.score([P, P], SOLS) for x in s.steps], abs=1e-5)
    with pytest.raises(ValueError, match="linear read-out"):
        RewardModel.new(tiny_ckpt, "prm", readout="logprob").add_lora(4)
