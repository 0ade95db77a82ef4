"""dist/flops.py: FLOPs counting and MFU by hand, and a sane matmul peak."""
import pytest

from rewardflow.eval.flops import attention_flops, matmul_peak_gflops, mfu, model_flops, throughput_mfu


def test_model_flops_by_hand():
    # P = 1000: 10 generated tokens at 2P = 20,000; 3 trained tokens at 6P = 18,000; 5 scored at 2P = 10,000
    assert model_flops(1000, gen_tokens=10) == 20_000
    assert model_flops(1000, train_tokens=3) == 18_000
    assert model_flops(1000, gen_tokens=10, train_tokens=3, forward_tokens=5) == 48_000
    # attention: 4·L·d·ctx = 4·2·8·16 = 1024 per forward token, ×3 per trained token
    a = attention_flops(layers=2, hidden=8, context=16)
    assert a == 1024
    assert model_flops(1000, gen_tokens=1, train_tokens=1, attn_per_token=a) == (2000 + 1024) + (6000 + 3 * 1024)


def test_mfu_by_hand():
    # 6e9 FLOPs in 2 s = 3 GFLOP/s against a 12 GFLOP/s peak: 0.25 (a fraction, not a percentage)
    assert mfu(6e9, 2.0, 12.0) == pytest.approx(0.25, abs=1e-12)
    # 1,000 generated tokens/s of a 1M-param model: 2e9 FLOP/s of 40 GFLOP/s = 0.05; 100 trained tokens/s: 6e8 -> 0.015
    out = throughput_mfu(1_000_000, 40.0, gen_tok_per_s=1000, train_tok_per_s=100)
    assert out["mfu_gen"] == pytest.approx(0.05, abs=1e-12)
    assert out["mfu_train"] == pytest.approx(0.015, abs=1e-12)
    with pytest.raises(ValueError, match="seconds > 0"):
        mfu(1.0, 0.0, 10.0)


def test_matmul_peak_is_measured_per_size():
    res = matmul_peak_gflops(sizes=(64, 128), reps=2, min_seconds=0.005)
    assert set(res["by_size"]) == {64, 128}
    assert res["peak_gflops"] == max(res["by_size"].values()) > 0.1  # any CPU does > 0.1 GFLOP/s
