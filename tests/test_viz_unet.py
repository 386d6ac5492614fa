"""minildm.course.viz_unet: shape traces, parameter breakdowns and attention probes report the right numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F

from minildm.course.viz_unet import (
    attention_weights,
    format_shape_trace,
    parameter_breakdown,
    plot_attention_maps,
    plot_parameter_breakdown,
    plot_timestep_embedding,
    record_cross_attention,
    unet_shape_trace,
)
from minildm.unet import CrossAttention, UNetModel, load_unet_config
from minildm.utils import count_parameters


def tiny_unet(context_dim: int | None = 16) -> UNetModel:
    torch.manual_seed(0)
    return UNetModel(in_channels=3, out_channels=3, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                     attention_resolutions=(1, 2), num_heads=2, context_dim=context_dim, norm_num_groups=8)


def test_shape_trace_follows_the_u():
    model = tiny_unet()
    rows = unet_shape_trace(model, torch.randn(2, 3, 8, 8), torch.tensor([3, 700]), torch.randn(2, 5, 16))
    names = [row[0] for row in rows]
    assert names[0] == "input_blocks.0" and names[-1] == "out" and "middle_block" in names
    assert len(rows) == len(model.input_blocks) + 1 + len(model.output_blocks) + 1
    shapes = {name: (inp, out) for name, _, inp, out in rows}
    assert shapes["input_blocks.0"] == ((2, 3, 8, 8), (2, 16, 8, 8))
    assert shapes["input_blocks.2"][1] == (2, 16, 4, 4)  # the Downsample halves H and W
    assert shapes["output_blocks.0"][0] == (2, 64, 4, 4)  # 32 channels + a 32-channel skip
    assert shapes["out"][1] == (2, 3, 8, 8)
    assert "Downsample" in dict((r[0], r[1]) for r in rows)["input_blocks.2"]
    table = format_shape_trace(rows)
    assert len(table.splitlines()) == len(rows) + 1 and "(2, 16, 4, 4)" in table
    assert not any(block._forward_hooks for block in model.modules())  # hooks removed


def test_parameter_breakdown_sums_to_the_total_and_sd_v1_count():
    model = tiny_unet()
    parts = parameter_breakdown(model)
    assert sum(parts.values()) == count_parameters(model)
    assert parts["transformer cross-attention"] > 0 and parts["ADM self-attention"] == 0
    adm = parameter_breakdown(tiny_unet(context_dim=None))
    assert adm["ADM self-attention"] > 0 and adm["transformer cross-attention"] == 0
    with torch.device("meta"):
        sd = UNetModel.from_config(load_unet_config("sd-v1"))
    sd_parts = parameter_breakdown(sd)
    assert sum(sd_parts.values()) == 859_520_964
    assert sd_parts["ResBlocks"] > sd_parts["transformer feed-forward"] > sd_parts["transformer cross-attention"]
    with pytest.raises(TypeError, match="UNetModel"):
        parameter_breakdown(torch.nn.Linear(2, 2))


def test_attention_weights_reproduce_the_module_output():
    torch.manual_seed(1)
    module = CrossAttention(query_dim=12, context_dim=6, heads=3, dim_head=4)
    x, context = torch.randn(2, 10, 12), torch.randn(2, 5, 6)
    weights = attention_weights(module, x, context)
    assert weights.shape == (2, 3, 10, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 10))
    v = module.to_v(context).view(2, 5, 3, 4).transpose(1, 2)  # (B, heads, M, d)
    out = (weights @ v).transpose(1, 2).reshape(2, 10, 12)
    torch.testing.assert_close(module.to_out(out), module(x, context), atol=1e-5, rtol=1e-5)
    self_weights = attention_weights(CrossAttention(12, None, 3, 4), x)
    assert self_weights.shape == (2, 3, 10, 10)


def test_record_cross_attention_sees_only_cross_attention_calls():
    model = tiny_unet()
    with record_cross_attention(model) as records, torch.no_grad():
        model(torch.randn(2, 3, 8, 8), 10, torch.randn(2, 5, 16))
    transformers = sum(1 for m in model.modules() if type(m).__name__ == "SpatialTransformer")
    assert len(records) == transformers  # one attn2 call each; attn1 (self-attention) skipped
    assert all(name.endswith("attn2") for name, _ in records)
    name, weights = records[0]
    assert weights.shape == (2, 2, 64, 5)  # (B, heads, H*W at ds 1, M)
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="no CrossAttention"):
        with record_cross_attention(torch.nn.Linear(2, 2)):
            pass


def test_plots_return_figures_and_check_shapes():
    fig = plot_timestep_embedding(dim=32, num_timesteps=50)
    assert len(fig.axes) >= 3
    fig = plot_parameter_breakdown({"tiny": parameter_breakdown(tiny_unet())})
    assert "parameters" in fig.axes[0].get_title()
    weights = F.softmax(torch.randn(2, 16, 3), dim=-1)
    fig = plot_attention_maps(torch.rand(2, 3, 4, 4) * 2 - 1, weights, [["a", "b", ""], ["c", "d", "e"]])
    assert len(fig.axes) == 2 * 5
    with pytest.raises(ValueError, match="H\\*W"):
        plot_attention_maps(torch.rand(2, 3, 4, 4), weights[:, :8], [["a", "b", "c"]] * 2)
    plt.close("all")
