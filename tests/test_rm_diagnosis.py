"""Why the learned reward models of `bench rm` did not select (docs/reward_models_selection.md): these pin the parts
of the pipeline the diagnosis cleared (tokenisation, the read-out position, the label alignment, the optimiser can
fit a label the read-out token carries) and the deeper reward-model backbone built for it."""
import random

import pytest
import torch

from rewardflow.recipes.bench.rm import auroc
from rewardflow.rewards.models import RewardModel
from rewardflow.train.rm import RMTrainConfig, deepen_backbone, train_reward_model


def test_step_readout_is_each_steps_last_digit(tiny_ckpt):
    rm = RewardModel.new(tiny_ckpt, "prm")
    steps = ["3 + 4 = 7", "7 + 12 = 19", "Answer: 19"]
    enc = rm.encode(["Compute: 3 + 4 + 12 ="], [steps])
    toks = rm.tokenizer.convert_ids_to_tokens(enc.input_ids[0].tolist())
    pos = enc.step_pos[0].tolist()
    # the character tokenizer spells every digit on its own: step 1 ends in "7", steps 2 and 3 in the "9" of "19",
    # and the token after a step's end is the newline that starts the next one
    assert [toks[p] for p in pos] == ["7", "9", "9"]
    assert toks[pos[1] - 1] == "1" and toks[pos[0] + 1] == "\n" and toks[pos[1] + 1] == "\n"
    assert pos[2] == enc.last[0].item() == len(toks) - 1  # the last step ends at the last token (the ORM's read-out)
    assert not enc.step_cut.any()


def _chain_rows(n: int, seed: int) -> list[dict]:
    """Steps 'a + b = c' with a random (mostly wrong) two-digit c; a step's label is the parity of c's last digit,
    a fact only the step's own last token carries: a read-out one token early (the first digit, a space) or a label
    shifted to the neighbouring step cannot fit it."""
    rng, rows = random.Random(seed), []
    for i in range(n):
        a, b, c, d = (rng.randint(1, 9) for _ in range(4))
        s1, s2 = rng.randint(10, 99), rng.randint(10, 99)
        steps = [f"{a} + {b} = {s1}", f"{s1} + {c} = {s2}", f"Answer: {s2 + d}"]
        rows.append({"prompt": f"Compute: {a} + {b} + {c} =", "steps": steps,
                     "labels": [float(int(st[-1]) % 2) for st in steps], "id": f"r{i}"})
    return rows


def test_prm_fits_a_label_its_readout_token_carries(tiny_ckpt, tmp_path):
    torch.manual_seed(0)
    rows, held = _chain_rows(160, seed=0), _chain_rows(40, seed=1)
    cfg = RMTrainConfig(kind="prm", epochs=6, lr=3e-3, batch_size=16, val_frac=0.0, seed=0)
    rm, _ = train_reward_model(tiny_ckpt, rows, tmp_path / "prm", cfg)
    with torch.no_grad():
        _, logits = rm(rm.encode([r["prompt"] for r in held], [r["steps"] for r in held]))  # [40, 3]
    pairs = [(logits[i, k].item(), r["labels"][k]) for i, r in enumerate(held) for k in range(3)]
    # chance is 0.5; the old hypothesis that the pipeline itself loses the step's content would keep it there
    assert auroc([x for x, y in pairs if y], [x for x, y in pairs if not y]) > 0.95


def test_deepen_backbone_starts_as_the_policy(tiny_ckpt, tmp_path):
    from transformers import AutoModelForCausalLM

    deep = deepen_backbone(tiny_ckpt, 2, tmp_path / "deep")
    policy = AutoModelForCausalLM.from_pretrained(tiny_ckpt, dtype=torch.float32).eval()
    grown = AutoModelForCausalLM.from_pretrained(deep, dtype=torch.float32).eval()
    assert grown.config.num_hidden_layers == policy.config.num_hidden_layers + 2
    ids = torch.tensor([[5, 17, 23, 42, 9, 11]])  # [1, 6]
    with torch.no_grad():
        a, b = policy(input_ids=ids).logits, grown(input_ids=ids).logits  # [1, 6, V]
    assert torch.allclose(a, b, atol=1e-5)  # the new blocks start as the identity: the same next-token predictions
    new_block = grown.model.layers[-1]
    assert new_block.mlp.down_proj.weight.abs().sum() == 0 and new_block.mlp.up_proj.weight.abs().sum() > 0
    rm = RewardModel.new(deep, "prm")  # a reward model takes it as its init
    assert rm.num_params > sum(p.numel() for p in policy.model.parameters())
    with pytest.raises(ValueError, match="extra_layers"):
        deepen_backbone(tiny_ckpt, 0, tmp_path / "none")
