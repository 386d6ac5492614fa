"""Teaching plots and probes for notebook 06 (the UNet and cross-attention, LDM Sec. 3.2-3.3).

    plot_timestep_embedding   the sinusoids of `timestep_embedding` as an image + their similarity
    unet_shape_trace          (B, C, H, W) after every UNet block, recorded with forward hooks
    format_shape_trace        that trace as a printable table
    parameter_breakdown       parameters per part (ResBlocks, self-/cross-attention, ...), meta device ok
    plot_parameter_breakdown  bar charts of one or more breakdowns
    attention_weights         softmax(Q K^T / sqrt(d)) of a CrossAttention module, per head
    record_cross_attention    context manager collecting those weights from every cross-attention call
    plot_attention_maps       which context token each pixel attends to

Nothing here is needed to train or sample; the library never imports this module.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence

import torch
import torch.nn as nn

from minildm.unet import (
    AttentionBlock,
    CrossAttention,
    Downsample,
    ResBlock,
    SpatialTransformer,
    Upsample,
    UNetModel,
    timestep_embedding,
)


def plot_timestep_embedding(dim: int = 128, num_timesteps: int = 1000, max_period: float = 10000.0):
    """Draw emb(t) for t = 0 .. T-1 as an image, a few of its columns, and the cosine similarity of emb(t), emb(t').

    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    t = torch.arange(num_timesteps)
    emb = timestep_embedding(t, dim, max_period)  # (T, dim)
    unit = emb / emb.norm(dim=1, keepdim=True)
    similarity = (unit @ unit.T).numpy()  # (T, T) cosine similarity
    t, emb = t.numpy(), emb.numpy()

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    row_step = max(1, num_timesteps // 200)  # every row_step-th t: the same picture in a much smaller PNG
    image = axes[0].imshow(emb[::row_step], aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest",
                           extent=(-0.5, dim - 0.5, num_timesteps - 0.5, -0.5))
    axes[0].set_xlabel(f"embedding dimension (cosines 0..{dim // 2 - 1}, then sines)")
    axes[0].set_ylabel("timestep t")
    axes[0].set_title(f"timestep_embedding(t, {dim})")
    fig.colorbar(image, ax=axes[0], fraction=0.04)
    half = dim // 2
    for column in [half // 4, 3 * half // 8, half // 2, 5 * half // 8, half - 1]:
        period = 2 * math.pi * max_period ** (column / half)
        axes[1].plot(t, emb[:, column], label=f"cos, column {column} (period {period:,.0f})", linewidth=1)
    axes[1].set_xlabel("timestep t")
    axes[1].set_title("some columns: cosines of geometrically spaced frequencies", fontsize=10)
    axes[1].legend(fontsize=7, loc="lower left")
    image = axes[2].imshow(similarity, cmap="viridis", vmin=similarity.min(), vmax=1)
    axes[2].set_xlabel("timestep t'")
    axes[2].set_ylabel("timestep t")
    axes[2].set_title("cosine similarity of emb(t) and emb(t')")
    fig.colorbar(image, ax=axes[2], fraction=0.04)
    fig.tight_layout()
    return fig


def _block_summary(block: nn.Module) -> str:
    """'ResBlock + SpatialTransformer', 'Downsample', 'Conv2d', ... for one UNet block."""
    layers = list(block) if isinstance(block, nn.Sequential) else [block]
    return " + ".join(type(layer).__name__ for layer in layers)


def unet_shape_trace(
    model: UNetModel,
    x: torch.Tensor,
    t: torch.Tensor | float,
    context: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
) -> list[tuple[str, str, tuple[int, ...], tuple[int, ...]]]:
    """Run `model(x, t, context, y)` once and return (block name, layers, input shape, output shape) per block.

    The blocks are `input_blocks.i`, `middle_block`, `output_blocks.i` and `out`, in call order;
    an output block's input shape includes the concatenated skip connection. Forward hooks record
    the shapes and are removed again, even when the forward pass fails.
    """
    if not isinstance(model, UNetModel):
        raise TypeError(f"unet_shape_trace expects a minildm UNetModel, got {type(model).__name__}")
    blocks = [(f"input_blocks.{i}", b) for i, b in enumerate(model.input_blocks)]
    blocks += [("middle_block", model.middle_block)]
    blocks += [(f"output_blocks.{i}", b) for i, b in enumerate(model.output_blocks)]
    blocks += [("out", model.out)]
    rows: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = []

    def make_hook(name: str, block: nn.Module):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            rows.append((name, _block_summary(block), tuple(args[0].shape), tuple(output.shape)))
        return hook

    handles = [block.register_forward_hook(make_hook(name, block)) for name, block in blocks]
    try:
        with torch.no_grad():
            model(x, t, context, y)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def format_shape_trace(rows: Sequence[tuple[str, str, tuple[int, ...], tuple[int, ...]]]) -> str:
    """The rows of `unet_shape_trace` as a fixed-width table, one block per line."""
    def shape(s: tuple[int, ...]) -> str:
        return "(" + ", ".join(str(v) for v in s) + ")"

    width = max(len(row[1]) for row in rows)
    lines = [f"{'block':17s} {'layers':{width}s} {'input':>18s} -> output"]
    lines += [f"{name:17s} {layers:{width}s} {shape(inp):>18s} -> {shape(out)}" for name, layers, inp, out in rows]
    return "\n".join(lines)


def _numel(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def parameter_breakdown(model: UNetModel) -> dict[str, int]:
    """Parameters per kind of part of a UNetModel; the values sum to all its parameters.

    Parts: time embedding (MLP + class embedding), input conv, ResBlocks, down/upsampling,
    ADM self-attention blocks, and for SpatialTransformers: self-attention (attn1),
    cross-attention (attn2), feed-forward (GEGLU) and the rest (norms, proj_in, proj_out).
    Works on the meta device, so a 860M-parameter model costs no memory.
    """
    if not isinstance(model, UNetModel):
        raise TypeError(f"parameter_breakdown expects a minildm UNetModel, got {type(model).__name__}")
    parts = {"time embedding": _numel(model.time_embed) + _numel(getattr(model, "label_emb", None)),
             "input conv": _numel(model.input_blocks[0]), "ResBlocks": 0, "down/upsampling": 0,
             "ADM self-attention": 0, "transformer self-attention": 0, "transformer cross-attention": 0,
             "transformer feed-forward": 0, "transformer norms + proj_in/out": 0, "output head": _numel(model.out)}
    for module in model.modules():
        if isinstance(module, ResBlock):
            parts["ResBlocks"] += _numel(module)
        elif isinstance(module, (Downsample, Upsample)):
            parts["down/upsampling"] += _numel(module)
        elif isinstance(module, AttentionBlock):
            parts["ADM self-attention"] += _numel(module)
        elif isinstance(module, SpatialTransformer):
            attn1 = sum(_numel(b.attn1) for b in module.transformer_blocks)
            attn2 = sum(_numel(b.attn2) for b in module.transformer_blocks)
            ff = sum(_numel(b.ff) for b in module.transformer_blocks)
            parts["transformer self-attention"] += attn1
            parts["transformer cross-attention"] += attn2
            parts["transformer feed-forward"] += ff
            parts["transformer norms + proj_in/out"] += _numel(module) - attn1 - attn2 - ff
    return parts


def plot_parameter_breakdown(breakdowns: Mapping[str, Mapping[str, int]]):
    """One horizontal bar chart per model (name -> `parameter_breakdown`), in percent of its total; returns the Figure."""
    import matplotlib.pyplot as plt

    if not breakdowns:
        raise ValueError("plot_parameter_breakdown needs at least one {model name: parameter_breakdown(model)}")
    fig, axes = plt.subplots(1, len(breakdowns), figsize=(6.5 * len(breakdowns), 3.8), squeeze=False)
    for ax, (name, parts) in zip(axes[0], breakdowns.items()):
        total = sum(parts.values())
        labels = list(parts)[::-1]
        percent = [100 * parts[k] / total for k in labels]
        bars = ax.barh(labels, percent, color="#4c72b0")
        for bar, key in zip(bars, labels):
            ax.text(bar.get_width() + 0.5, bar.get_y() + bar.get_height() / 2, f"{parts[key]:,}", va="center",
                    fontsize=7)
        ax.set_xlim(0, max(percent) * 1.35 + 1)
        ax.set_xlabel("% of parameters")
        ax.set_title(f"{name}: {total:,} parameters", fontsize=10)
    fig.tight_layout()
    return fig


def attention_weights(module: CrossAttention, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) (LDM Eq. 3) of a CrossAttention: (B, N, query_dim), (B, M, context_dim) -> (B, heads, N, M).

    Q comes from the tokens x, K from the context (from x itself when there is none); row n
    says how much token n reads from each of the M context tokens (it sums to 1).
    """
    if not isinstance(module, CrossAttention):
        raise TypeError(f"attention_weights expects a minildm CrossAttention, got {type(module).__name__}")
    context = x if context is None else context
    batch, heads, dim_head = x.shape[0], module.heads, module.dim_head
    q = module.to_q(x).view(batch, -1, heads, dim_head).transpose(1, 2)  # (B, heads, N, d)
    k = module.to_k(context).view(batch, -1, heads, dim_head).transpose(1, 2)  # (B, heads, M, d)
    return (q @ k.transpose(-2, -1) / math.sqrt(dim_head)).softmax(dim=-1)  # (B, heads, N, M)


@contextlib.contextmanager
def record_cross_attention(model: nn.Module) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Inside the `with`, every call of a CrossAttention WITH a context appends (module name, weights (B, heads, N, M)).

    Self-attention calls (no context) are skipped. The hooks are removed on exit.
    """
    records: list[tuple[str, torch.Tensor]] = []

    def make_hook(name: str):
        def hook(module: CrossAttention, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
            x = args[0]
            context = args[1] if len(args) > 1 else kwargs.get("context")
            if context is not None:
                with torch.no_grad():
                    records.append((name, attention_weights(module, x, context).detach()))
        return hook

    handles = [m.register_forward_hook(make_hook(name), with_kwargs=True)
               for name, m in model.named_modules() if isinstance(m, CrossAttention)]
    if not handles:
        raise ValueError(f"record_cross_attention: {type(model).__name__} contains no CrossAttention module")
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def plot_attention_maps(images: torch.Tensor, weights: torch.Tensor, token_names: Sequence[Sequence[str]],
                        colours: Sequence[str] | None = None):
    """Which context token each pixel attends to, for a few examples; returns the Figure.

    images: (B, 3, H, W) in [-1, 1]; weights: (B, H*W, M) attention of every pixel over M tokens
    (average the heads first); token_names: per example, M names ("" hides a token's map).
    Row b shows the image, the map of every named token and the argmax token per pixel.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from minildm.data import to_image

    batch, _, height, width = images.shape
    if weights.ndim != 3 or weights.shape[:2] != (batch, height * width):
        raise ValueError(f"weights must have shape (B, H*W, M) = ({batch}, {height * width}, M) for images of shape "
                         f"{tuple(images.shape)}; got {tuple(weights.shape)}")
    tokens = weights.shape[2]
    if len(token_names) != batch or any(len(names) != tokens for names in token_names):
        raise ValueError(f"token_names needs {batch} lists of {tokens} names (one per context token)")
    colours = list(colours or plt.get_cmap("tab10").colors)[:tokens]
    maps = weights.detach().float().cpu().reshape(batch, height, width, tokens).numpy()
    fig, axes = plt.subplots(batch, tokens + 2, figsize=(1.9 * (tokens + 2), 1.9 * batch + 0.4), squeeze=False)
    for b in range(batch):
        axes[b, 0].imshow(to_image(images[b]))
        axes[b, 0].set_title("input", fontsize=8)
        for m in range(tokens):
            if token_names[b][m]:
                axes[b, m + 1].imshow(maps[b, :, :, m], cmap="magma", vmin=0, vmax=1)
                axes[b, m + 1].set_title(f"token {m}: {token_names[b][m]}", fontsize=8, color=colours[m])
        axes[b, -1].imshow(maps[b].argmax(axis=-1), cmap=ListedColormap(colours), vmin=-0.5, vmax=tokens - 0.5,
                           interpolation="nearest")
        axes[b, -1].set_title("argmax token", fontsize=8)
        for ax in axes[b]:
            ax.axis("off")
    fig.tight_layout()
    return fig
