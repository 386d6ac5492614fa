"""minildm.unet: timestep embedding, attention, blocks and the UNetModel (shapes, init, conditioning)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from minildm.unet import (
    AttentionBlock,
    CrossAttention,
    Downsample,
    ResBlock,
    SpatialTransformer,
    UNetModel,
    Upsample,
    attention,
    available_unet_configs,
    load_unet_config,
    timestep_embedding,
)
from minildm.utils import count_parameters

TINY = dict(
    in_channels=4, out_channels=4, model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
    attention_resolutions=(2,), num_heads=2, context_dim=8, norm_num_groups=8,
)  # fmt: skip


def randomize(module: torch.nn.Module, std: float = 0.2, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter (the zero-initialised ones too) so that every path contributes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)
    return module


# ---------------------------------------------------------------- timestep embedding


def test_timestep_embedding_formula_cos_first():
    t = torch.tensor([0, 1, 500, 999])
    emb = timestep_embedding(t, 8)
    assert emb.shape == (4, 8) and emb.dtype == torch.float32
    freqs = torch.tensor([10000 ** (-i / 4) for i in range(4)])
    expected = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=1)
    torch.testing.assert_close(emb, expected)
    assert torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # t = 0: cos = 1 first, then sin = 0


def test_timestep_embedding_matches_diffusers_sd_convention():
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([3.0, 250.5, 999.0])
    ours = timestep_embedding(t, 320)
    ref = get_timestep_embedding(t, 320, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


def test_timestep_embedding_odd_dim_and_errors():
    emb = timestep_embedding(torch.tensor([7, 9]), 5)
    assert emb.shape == (2, 5) and torch.equal(emb[:, -1], torch.zeros(2))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        timestep_embedding(torch.zeros(2, 1), 8)


# ---------------------------------------------------------------- attention


def test_attention_function_matches_sdpa_and_is_convex_combination():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    out = attention(q, k, v)
    assert out.shape == (2, 3, 5, 4)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5, rtol=1e-5)
    # identical values -> any weighting returns them
    same = torch.ones(2, 3, 7, 4) * 2.5
    torch.testing.assert_close(attention(q, k, same), torch.full((2, 3, 5, 4), 2.5))
    with pytest.raises(ValueError, match="q \\(..., N, d\\)"):
        attention(q, torch.randn(2, 3, 7, 6), v)


def test_cross_attention_reference_and_self_attention_default():
    torch.manual_seed(0)
    layer = CrossAttention(query_dim=12, context_dim=6, heads=3, dim_head=4)
    x, ctx = torch.randn(2, 10, 12), torch.randn(2, 5, 6)
    out = layer(x, ctx)
    assert out.shape == (2, 10, 12)
    split = lambda z: z.view(2, -1, 3, 4).transpose(1, 2)  # noqa: E731
    ref = attention(split(layer.to_q(x)), split(layer.to_k(ctx)), split(layer.to_v(ctx)))
    ref = layer.to_out(ref.transpose(1, 2).reshape(2, 10, 12))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert layer.to_q.bias is None and layer.to_k.bias is None and layer.to_v.bias is None

    self_attn = CrossAttention(query_dim=12, heads=3, dim_head=4)
    torch.testing.assert_close(self_attn(x), self_attn(x, x))


def test_attention_block_identity_at_init_and_legacy_qkv_order():
    torch.manual_seed(0)
    block = AttentionBlock(16, heads=2, norm_num_groups=4)
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(block(x), x)  # zero-initialised proj_out

    randomize(block)
    b, c, hw, heads, d = 2, 16, 16, 2, 8
    # the original QKVAttentionLegacy: per head, channels [q, k, v] (d each)
    qkv = block.qkv(block.norm(x.reshape(b, c, hw))).reshape(b * heads, 3 * d, hw)
    q, k, v = qkv.split(d, dim=1)  # (B*heads, d, HW) each
    weights = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(d), dim=-1)  # (B*heads, HW, HW)
    a = (weights @ v.transpose(1, 2)).transpose(1, 2).reshape(b, c, hw)
    expected = x + block.proj_out(a).reshape(b, c, 4, 4)
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- ResBlock, resampling


def test_resblock_starts_as_skip_and_uses_time_embedding():
    torch.manual_seed(0)
    block = ResBlock(8, emb_channels=12, out_channels=16, norm_num_groups=4)
    x, emb = torch.randn(2, 8, 6, 6), torch.randn(2, 12)
    out = block(x, emb)
    assert out.shape == (2, 16, 6, 6)
    torch.testing.assert_close(out, block.skip_connection(x))  # zero-initialised last conv
    assert isinstance(block.skip_connection, torch.nn.Conv2d) and block.skip_connection.kernel_size == (1, 1)
    assert isinstance(ResBlock(8, 12, norm_num_groups=4).skip_connection, torch.nn.Identity)

    randomize(block)
    assert not torch.allclose(block(x, emb), block(x, emb + 1.0))
    # the additive path equals the formula written out
    h = block.in_layers(x) + block.emb_layers(emb)[:, :, None, None]
    torch.testing.assert_close(block(x, emb), block.skip_connection(x) + block.out_layers(h))


def test_resblock_scale_shift_norm():
    torch.manual_seed(0)
    block = randomize(ResBlock(8, emb_channels=12, use_scale_shift_norm=True, norm_num_groups=4))
    assert block.emb_layers[1].out_features == 16  # scale and shift
    x, emb = torch.randn(2, 8, 5, 5), torch.randn(2, 12)
    scale, shift = block.emb_layers(emb)[:, :, None, None].chunk(2, dim=1)
    h = block.out_layers[0](block.in_layers(x)) * (1 + scale) + shift
    expected = x + block.out_layers[1:](h)
    torch.testing.assert_close(block(x, emb), expected)


def test_down_and_upsample_shapes():
    x = torch.randn(2, 8, 8, 6)
    assert Downsample(8)(x).shape == (2, 8, 4, 3)
    up = Upsample(8)
    assert up(x).shape == (2, 8, 16, 12)
    with torch.no_grad():
        up.conv.weight.zero_()
        up.conv.weight[:, :, 1, 1] = torch.eye(8)  # identity conv -> pure nearest-neighbour upsampling
        up.conv.bias.zero_()
    torch.testing.assert_close(up(x), x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


# ---------------------------------------------------------------- SpatialTransformer


def test_spatial_transformer_identity_at_init_then_reads_context():
    torch.manual_seed(0)
    block = SpatialTransformer(16, heads=2, dim_head=8, depth=2, context_dim=6, norm_num_groups=4)
    x, ctx = torch.randn(2, 16, 4, 4), torch.randn(2, 3, 6)
    torch.testing.assert_close(block(x, ctx), x)
    assert block.norm.eps == 1e-6 and len(block.transformer_blocks) == 2
    assert block.transformer_blocks[0].ff.net[0].proj.out_features == 2 * 4 * 16  # GEGLU: value and gate, x4
    randomize(block)
    out = block(x, ctx)
    assert out.shape == x.shape
    assert not torch.allclose(out, block(x, ctx + 1.0))  # cross-attention sees the context


def test_spatial_transformer_linear_projection_equals_conv():
    torch.manual_seed(0)
    conv = randomize(SpatialTransformer(16, 2, 8, context_dim=6, norm_num_groups=4))
    linear = SpatialTransformer(16, 2, 8, context_dim=6, norm_num_groups=4, use_linear=True)
    is_projection = ("proj_in.weight", "proj_out.weight")
    state = {k: v.flatten(1) if k.startswith(is_projection) else v for k, v in conv.state_dict().items()}
    linear.load_state_dict(state)
    x, ctx = torch.randn(2, 16, 3, 5), torch.randn(2, 4, 6)
    torch.testing.assert_close(linear(x, ctx), conv(x, ctx), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- UNetModel


def test_unet_output_shape_zero_init_and_layout():
    torch.manual_seed(0)
    model = UNetModel(**TINY)
    x, t, ctx = torch.randn(3, 4, 8, 8), torch.tensor([0, 10, 999]), torch.randn(3, 5, 8)
    out = model(x, t, ctx)
    assert out.shape == (3, 4, 8, 8)
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised output conv
    # attention_resolutions=(2,) are RATES: only the second level (8x8 -> 4x4) has transformers
    kinds = [[type(layer).__name__ for layer in block] for block in model.input_blocks]
    assert kinds == [["Conv2d"], ["ResBlock"], ["Downsample"], ["ResBlock", "SpatialTransformer"]]
    assert [type(layer).__name__ for layer in model.middle_block] == ["ResBlock", "SpatialTransformer", "ResBlock"]
    assert len(model.output_blocks) == 2 * (TINY["num_res_blocks"] + 1)
    assert model.time_embed[0].out_features == 4 * TINY["model_channels"]


def test_unet_first_level_wider_than_model_channels():
    # channel_mult[0] != 1: the last output block and the output head work at model_channels * channel_mult[0]
    torch.manual_seed(0)
    unet = UNetModel(**{**TINY, "channel_mult": (2, 4), "context_dim": None})
    assert unet.out[0].num_channels == 32 and unet.out[2].in_channels == 32
    with torch.no_grad():
        for p in unet.out.parameters():
            p.normal_()
        out = unet(torch.randn(2, 4, 8, 8), torch.tensor([1, 500]))
    assert out.shape == (2, 4, 8, 8) and out.abs().sum() > 0


def test_unet_conditioning_changes_output_and_scalar_timestep():
    torch.manual_seed(0)
    model = randomize(UNetModel(**TINY), std=0.1).eval()
    x, ctx = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 8)
    out = model(x, torch.tensor([50, 50]), ctx)
    torch.testing.assert_close(model(x, 50, ctx), out)  # a scalar timestep is broadcast
    assert not torch.allclose(model(x, torch.tensor([51, 50]), ctx)[0], out[0])
    assert not torch.allclose(model(x, torch.tensor([50, 50]), ctx + 1)[0], out[0])
    # one sample's output depends on its own inputs only
    torch.testing.assert_close(model(x[:1], torch.tensor([50]), ctx[:1]), out[:1], atol=1e-5, rtol=1e-5)


def test_unet_class_conditional_adm_and_concat_channels():
    torch.manual_seed(0)
    config = dict(TINY, context_dim=None, num_classes=5, in_channels=7, attention_resolutions=(1, 2))
    model = randomize(UNetModel(**config), std=0.1).eval()
    assert model.label_emb.weight.shape == (5, 64)
    assert type(model.input_blocks[1][1]).__name__ == "AttentionBlock"  # no context -> self-attention
    x = torch.randn(2, 7, 8, 8)
    a = model(x, torch.tensor([3, 3]), y=torch.tensor([0, 1]))
    b = model(x, torch.tensor([3, 3]), y=torch.tensor([0, 4]))
    assert a.shape == (2, 4, 8, 8)
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a[1], b[1])


def test_unet_clear_errors():
    model = UNetModel(**TINY)
    x, t, ctx = torch.randn(1, 4, 8, 8), torch.tensor([1]), torch.randn(1, 2, 8)
    with pytest.raises(ValueError, match="context of shape"):
        model(x, t)
    with pytest.raises(ValueError, match="context of shape"):
        model(x, t, torch.randn(1, 2, 9))
    with pytest.raises(ValueError, match="not class-conditional"):
        model(x, t, ctx, y=torch.tensor([0]))
    with pytest.raises(ValueError, match="divisible by 2"):
        model(torch.randn(1, 4, 7, 8), t, ctx)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        model(torch.randn(1, 3, 8, 8), t, ctx)
    with pytest.raises(ValueError, match="not pixel sizes"):
        UNetModel(**dict(TINY, attention_resolutions=(16,)))
    with pytest.raises(ValueError, match="norm_num_groups"):
        UNetModel(**dict(TINY, norm_num_groups=32))
    with pytest.raises(ValueError, match="heads"):
        UNetModel(**dict(TINY, num_heads=3))
    with pytest.raises(ValueError, match="unknown UNet config keys"):
        UNetModel.from_config(dict(TINY, attention_resolution=(2,)))
    with pytest.raises(ValueError, match="class-conditional"):
        UNetModel(**dict(TINY, num_classes=3))(x, t, ctx)


def test_unet_gradient_checkpointing_same_gradients():
    torch.manual_seed(0)
    plain = randomize(UNetModel(**TINY), std=0.1)
    checkpointed = UNetModel(**dict(TINY, use_checkpoint=True))
    checkpointed.load_state_dict(plain.state_dict())
    x, t, ctx = torch.randn(2, 4, 8, 8), torch.tensor([5, 600]), torch.randn(2, 3, 8)
    for model in (plain, checkpointed):
        model(x, t, ctx).square().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-4, msg=name)
    assert plain.input_blocks[3][0].in_layers[2].weight.grad.abs().sum() > 0


def test_sd_v1_config_parameter_count_on_meta_device():
    config = load_unet_config("sd-v1")
    assert config["attention_resolutions"] == [4, 2, 1] and config["context_dim"] == 768
    with torch.device("meta"):
        model = UNetModel.from_config(config)
    assert count_parameters(model) == 859_520_964


@pytest.mark.parametrize("name", [n for n in available_unet_configs() if n != "sd-v1"])
def test_shipped_tiny_configs_build_and_run(name):
    config = load_unet_config(name)
    model = UNetModel.from_config(config).eval()
    assert count_parameters(model) < 10_000_000
    size = 2 ** (len(config["channel_mult"]) - 1) * 4
    x = torch.randn(2, config["in_channels"], size, size)
    kwargs = {}
    if config.get("context_dim"):
        kwargs["context"] = torch.randn(2, 3, config["context_dim"])
    if config.get("num_classes"):
        kwargs["y"] = torch.tensor([0, config["num_classes"] - 1])
    assert model(x, torch.tensor([1, 2]), **kwargs).shape == (2, config["out_channels"], size, size)


def test_load_unet_config_errors():
    assert "sd-v1" in available_unet_configs()
    with pytest.raises(ValueError, match="shipped configs: .*sd-v1"):
        load_unet_config("no-such-config")
