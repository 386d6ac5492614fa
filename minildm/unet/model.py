"""UNetModel: the denoiser eps_theta(z_t, t, y) of a latent diffusion model (LDM Sec. 3.2-3.3, Eq. 2-3).

The ADM UNet (Dhariwal & Nichol, 2021) as used by LDM and Stable Diffusion:

    t  -> timestep_embedding -> time_embed MLP -> emb (B, 4 * model_channels)
          (+ label_emb(y) for class-conditional "adm" models)
    x  -> input_blocks:  conv_in, then per level num_res_blocks x [ResBlock (+ attention)]
                         and a Downsample between levels; every output is kept as a skip
       -> middle_block:  ResBlock, attention, ResBlock
       -> output_blocks: per level (reversed) num_res_blocks + 1 x
                         [concat skip, ResBlock (+ attention)] and an Upsample between levels
       -> out:           GroupNorm, SiLU, zero-initialised conv -> (B, out_channels, H, W)

"Attention" is a SpatialTransformer (cross-attention on `context`) when `context_dim` is set,
ADM's self-attention AttentionBlock otherwise. It is placed at the levels whose
DOWNSAMPLING RATE ds = 1, 2, 4, ... (1 at full resolution, doubling after each Downsample)
is listed in `attention_resolutions` -- despite the original name, these are rates, not
pixel sizes: SD v1's (4, 2, 1) on 64x64 latents means attention at 16x16, 32x32 and 64x64.

Conditioning (LDM Sec. 3.3): `context` (B, M, context_dim) for cross-attention (text, a class
token, layout boxes); `y` (B,) integer labels added to the time embedding when `num_classes`
is set ("adm"); concatenated inputs (masked image, low-res image) simply widen `in_channels`.

Module names and indices match the original `model.diffusion_model.*` keys, so Stable
Diffusion v1 checkpoints load with no renames (see minildm.pretrained.unet).

Speed: attention runs through torch's fused scaled_dot_product_attention. On a GPU,
`model.to(memory_format=torch.channels_last)` with channels_last inputs speeds up the convs,
and the SpatialTransformer's (B, C, H, W) <-> (B, HW, C) reshapes then cost nothing.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
import torch.nn as nn

from minildm.unet.attention_layers import AttentionBlock
from minildm.unet.embeddings import timestep_embedding
from minildm.unet.resblock import Downsample, ResBlock, Upsample
from minildm.unet.transformer import SpatialTransformer


class TimestepEmbedSequential(nn.Sequential):
    """A sequence of UNet layers; hands each the input it needs (name from the original code).

    ResBlocks get the time embedding, SpatialTransformers the context, the rest only x.
    """

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W), (B, emb), optional (B, M, context_dim) -> (B, C', H', W')."""
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    """eps_theta(x, t, context, y): (B, in_channels, H, W) -> (B, out_channels, H, W). See the module docstring.

    Args:
        in_channels: input channels (latent channels + any concatenated conditioning channels).
        out_channels: output channels (the latent channels).
        model_channels: width of the first level; level i has model_channels * channel_mult[i].
        channel_mult: width multiplier per level; len(channel_mult) - 1 Downsamples.
        num_res_blocks: ResBlocks per level on the way down (the way up has one more).
        attention_resolutions: DOWNSAMPLING RATES ds (1, 2, 4, ...) that get attention --
            NOT pixel sizes. ds = 2**level.
        num_heads: attention heads (each dim_head = channels // num_heads) ...
        num_head_channels: ... or, when set, a fixed dim_head (heads = channels // num_head_channels);
            it takes precedence over num_heads (SD v2 uses 64).
        transformer_depth: BasicTransformerBlocks per SpatialTransformer.
        context_dim: width of the cross-attention context; None -> self-attention AttentionBlocks.
        num_classes: number of class labels for "adm" conditioning (y in [0, num_classes)); None = off.
        use_scale_shift_norm: ResBlocks apply the time embedding as GroupNorm scale and shift.
        dropout: dropout in ResBlocks and transformer blocks.
        norm_num_groups: GroupNorm groups everywhere (32 in every released model; smaller for tiny widths).
        use_linear_in_transformer: Linear instead of 1x1 conv proj_in/proj_out (SD v2 style).
        use_checkpoint: gradient checkpointing in ResBlocks and transformer blocks (less memory, ~30% slower).
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        model_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 4),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (),
        num_heads: int = 4,
        num_head_channels: int | None = None,
        transformer_depth: int = 1,
        context_dim: int | None = None,
        num_classes: int | None = None,
        use_scale_shift_norm: bool = False,
        dropout: float = 0.0,
        norm_num_groups: int = 32,
        use_linear_in_transformer: bool = False,
        use_checkpoint: bool = False,
    ):
        super().__init__()
        self.config: dict[str, Any] = dict(
            in_channels=in_channels, out_channels=out_channels, model_channels=model_channels,
            channel_mult=list(channel_mult), num_res_blocks=num_res_blocks,
            attention_resolutions=list(attention_resolutions), num_heads=num_heads,
            num_head_channels=num_head_channels, transformer_depth=transformer_depth, context_dim=context_dim,
            num_classes=num_classes, use_scale_shift_norm=use_scale_shift_norm, dropout=dropout,
            norm_num_groups=norm_num_groups, use_linear_in_transformer=use_linear_in_transformer,
            use_checkpoint=use_checkpoint,
        )  # fmt: skip
        _check_config(self.config)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.model_channels = model_channels
        self.num_classes = num_classes
        self.context_dim = context_dim
        time_embed_dim = 4 * model_channels

        def resblock(channels: int, out: int) -> ResBlock:
            return ResBlock(channels, time_embed_dim, out, dropout, use_scale_shift_norm, norm_num_groups, use_checkpoint)

        def attention(channels: int) -> nn.Module:
            if num_head_channels is not None:
                heads, dim_head = channels // num_head_channels, num_head_channels
            else:
                heads, dim_head = num_heads, channels // num_heads
            if heads * dim_head != channels:
                raise ValueError(
                    f"UNetModel: {channels} channels cannot be split into attention heads "
                    f"(num_heads={num_heads}, num_head_channels={num_head_channels}); "
                    "choose values that divide every level's width"
                )
            if context_dim is None:
                return AttentionBlock(channels, heads, norm_num_groups)
            return SpatialTransformer(
                channels, heads, dim_head, transformer_depth, context_dim, dropout,
                norm_num_groups, use_linear_in_transformer, use_checkpoint,
            )  # fmt: skip

        # t -> (B, model_channels) sinusoids -> (B, 4 * model_channels)
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim)
        )
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, time_embed_dim)

        # Encoder: (B, in, H, W) -> (B, model_channels * channel_mult[-1], H / 2^(L-1), W / 2^(L-1))
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        skip_channels = [model_channels]  # channels of every input-block output, consumed by the decoder
        ch, ds = model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [resblock(ch, model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(attention(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2

        # Bottleneck at the lowest resolution (always with attention, as in the original).
        self.middle_block = TimestepEmbedSequential(resblock(ch, ch), attention(ch), resblock(ch, ch))

        # Decoder: each block first concatenates the matching encoder output (the U's skip connection).
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [resblock(ch + skip_channels.pop(), model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(attention(ch))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        # the last output block leaves model_channels * channel_mult[0] channels (= model_channels in every
        # released model, where channel_mult[0] == 1)
        self.out = nn.Sequential(nn.GroupNorm(norm_num_groups, ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "UNetModel":
        """Build from a config dict (e.g. `load_unet_config("sd-v1")`); unknown keys raise ValueError."""
        valid = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(config) - valid)
        if unknown:
            raise ValueError(f"unknown UNet config keys {unknown}; valid keys: {sorted(valid)}")
        return cls(**config)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        context: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, in_channels, H, W), timesteps (B,) or a scalar, context (B, M, context_dim), labels (B,)
        -> (B, out_channels, H, W). H and W must be divisible by 2^(len(channel_mult) - 1).
        """
        self._check_inputs(x, context, y)
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])  # one timestep for the whole batch
        t_emb = timestep_embedding(t, self.model_channels).to(self.time_embed[0].weight.dtype)  # (B, model_channels)
        emb = self.time_embed(t_emb)  # (B, model_channels) -> (B, 4 * model_channels)
        if self.num_classes is not None:
            emb = emb + self.label_emb(y)  # "adm" class conditioning: (B,) -> (B, 4 * model_channels)

        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, context)  # (B, C, H, W) -> (B, C', H or H/2, W or W/2)
            skips.append(h)
        h = self.middle_block(h, emb, context)  # lowest resolution, shape unchanged
        for block in self.output_blocks:
            h = torch.cat([h, skips.pop()], dim=1)  # (B, C, H, W) + (B, C_skip, H, W) -> (B, C + C_skip, H, W)
            h = block(h, emb, context)  # -> (B, C', H or 2H, W or 2W)
        return self.out(h)  # (B, model_channels, H, W) -> (B, out_channels, H, W)

    def _check_inputs(self, x: torch.Tensor, context: torch.Tensor | None, y: torch.Tensor | None) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNetModel expects x of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        factor = 2 ** (len(self.config["channel_mult"]) - 1)
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"UNetModel: H and W must be divisible by {factor} (2^(levels - 1)), got {tuple(x.shape[2:])}")
        if self.context_dim is not None and (context is None or context.ndim != 3 or context.shape[-1] != self.context_dim):
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"this UNet cross-attends: pass context of shape (B, M, {self.context_dim}), got {got}")
        if self.context_dim is None and context is not None:
            raise ValueError("this UNet has no cross-attention (context_dim=None) but a context was given")
        if self.num_classes is not None and (y is None or y.shape != (x.shape[0],)):
            got = None if y is None else tuple(y.shape)
            raise ValueError(
                f"this UNet is class-conditional (num_classes={self.num_classes}): "
                f"pass labels y of shape ({x.shape[0]},), got {got}"
            )
        if self.num_classes is None and y is not None:
            raise ValueError("this UNet is not class-conditional (num_classes=None) but labels y were given")


def _check_config(config: dict[str, Any]) -> None:
    """Reject configs that would build a broken UNet, naming the offending value."""
    levels = len(config["channel_mult"])
    if levels < 1:
        raise ValueError("channel_mult needs at least one level, e.g. [1, 2, 4]")
    rates = [2**level for level in range(levels)]
    bad = [r for r in config["attention_resolutions"] if r not in rates]
    if bad:
        raise ValueError(
            f"attention_resolutions {bad} are not downsampling rates of this UNet; valid rates: {rates} "
            "(attention_resolutions are rates ds = 2^level, not pixel sizes)"
        )
    groups = config["norm_num_groups"]
    widths = [config["model_channels"] * m for m in config["channel_mult"]]
    if any(w % groups for w in widths):
        raise ValueError(f"norm_num_groups={groups} must divide every level width {widths}")
