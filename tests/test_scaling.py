"""What scale costs, measured without running at scale: training FLOPs, saved activations, training state."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minildm.metrics.speed import saved_activation_bytes, training_state_bytes, unet_flops, unet_training_flops
from minildm.unet import UNetModel

TINY = dict(in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
            attention_resolutions=(1, 2), num_heads=2, context_dim=16, norm_num_groups=8)


def test_training_flops_forward_equals_unet_flops_and_backward_is_about_twice():
    unet = UNetModel(**TINY)
    context = torch.randn(1, 3, 16)
    flops = unet_training_flops(unet, (4, 8, 8), context=context)
    assert flops["forward"] == unet_flops(unet, (4, 8, 8), context=context)
    assert 1.8 < flops["backward"] / flops["forward"] < 2.2  # input gradients + weight gradients
    assert flops["total"] == flops["forward"] + flops["backward"]
    assert all(p.grad is None for p in unet.parameters())  # the measurement leaves no gradients behind
    with torch.device("meta"):  # the same count without any arithmetic
        meta_unet, meta_context = UNetModel(**TINY), torch.zeros(1, 3, 16)
    assert unet_training_flops(meta_unet, (4, 8, 8), context=meta_context) == flops


def test_flops_count_attention_on_the_cpu():
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 2, 64, 16)
    counter = FlopCounterMode(display=False)
    with counter:
        F.scaled_dot_product_attention(x, x, x)
    assert counter.get_total_flops() == 0  # torch has no formula for the CPU's fused kernel: why unet_flops steps in
    unet = UNetModel(**TINY)
    with torch.device("meta"):  # the meta device computes attention as matmuls, which are counted
        meta_unet = UNetModel(**TINY)
    assert unet_flops(unet, (4, 8, 8), context=torch.zeros(1, 3, 16)) == \
        unet_flops(meta_unet, (4, 8, 8), context=torch.zeros(1, 3, 16, device="meta"))


def test_saved_activation_bytes_counts_what_backward_keeps_but_not_the_weights():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU())
    x = torch.randn(7, 10, requires_grad=True)  # so that Linear also keeps its weight, for the input's gradient
    # Linear keeps its input (7 x 10), ReLU its output (7 x 20), float32; the weight is the model's own
    assert saved_activation_bytes(lambda: model(x), model) == 4 * 7 * (10 + 20)
    assert saved_activation_bytes(lambda: model(x)) == 4 * 7 * (10 + 20) + 4 * 20 * 10  # weights counted too


def test_saved_activation_bytes_flash_attention_keeps_no_attention_matrix():
    b, h, n, d = 2, 3, 64, 8
    q, k, v = (torch.randn(b, h, n, d, requires_grad=True) for _ in range(3))
    flash = saved_activation_bytes(lambda: F.scaled_dot_product_attention(q, k, v))
    assert flash == 4 * (4 * b * h * n * d + b * h * n)  # q, k, v, output, one log-sum-exp per row
    with torch.device("meta"):  # the meta device runs the unfused computation, attention matrix and all
        q, k, v = (torch.zeros(b, h, n, d, requires_grad=True) for _ in range(3))
    unfused = saved_activation_bytes(lambda: F.scaled_dot_product_attention(q, k, v), attention="as_is")
    assert unfused >= 4 * b * h * n * n  # the softmax output at least: quadratic in n
    assert saved_activation_bytes(lambda: F.scaled_dot_product_attention(q, k, v)) == flash
    with pytest.raises(ValueError, match="flash"):
        saved_activation_bytes(lambda: None, attention="fused")


def test_gradient_checkpointing_keeps_a_fraction_of_the_activations():
    plain, checkpointed = UNetModel(**TINY).train(), UNetModel(**TINY, use_checkpoint=True).train()
    x, t, context = torch.randn(2, 4, 16, 16), torch.tensor([3, 700]), torch.randn(2, 3, 16)
    full = saved_activation_bytes(lambda: plain(x, t, context=context), plain)
    kept = saved_activation_bytes(lambda: checkpointed(x, t, context=context), checkpointed)
    assert 0 < kept < full / 3


def test_training_state_bytes():
    model = nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 5))
    model[1].requires_grad_(False)
    trainable, frozen = 10 * 20 + 20, 20 * 5 + 5
    assert training_state_bytes(model) == {"weights": 4 * (trainable + frozen), "gradients": 4 * trainable,
                                           "adamw": 8 * trainable, "ema": 4 * trainable}
    assert training_state_bytes(model, ema=False)["ema"] == 0


def test_scaling_benchmark_counts_a_full_config(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"
    spec = importlib.util.spec_from_file_location("scaling_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "scaling.json"
    assert module.main(["--configs", "ldm/cin256-ldm4", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["counts"][0]
    assert row["parameters"]["unet"] == 400_920_579 and row["latent"] == [3, 64, 64]
    assert row["train_tflop_per_image_checkpointing"] > row["train_tflop_per_image"] > 0.5
    assert 0 < row["activation_gib_per_image_checkpointing"] < row["activation_gib_per_image"]
    assert "| ldm/cin256-ldm4 | 400,920,579 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="accepted"):
        module.main(["--configs", "ldm/nope"])


@pytest.mark.not_on_stand_in("builds the model on the meta device")
def test_ema_shadows_live_on_the_models_device():
    from minildm.train.ema import EMA

    with torch.device("meta"):  # any device: the shadows are made where the weights are, and updated there
        model = UNetModel(**TINY)
    ema = EMA(model, decay=0.999)
    assert ema.shadow and all(s.is_meta for s in ema.shadow.values())
    ema.update(model)
    assert all(s.is_meta for s in ema.shadow.values()) and ema.num_updates == 1
