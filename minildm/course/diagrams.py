"""The two-stage LDM picture (paper Fig. 3) drawn with matplotlib, for the course notebooks.

Stage 1 (perceptual compression, Sec. 3.1): an encoder E maps an image x (3 x H x W) to a
latent z = E(x) (c x H/f x W/f) and a decoder D maps it back, x~ = D(z). Stage 2 (Sec. 3.2,
Eq. 2): a denoising UNet eps_theta(z_t, t) learns to reverse the diffusion process in the
latent space; a condition y enters through a domain encoder tau_theta and cross-attention
(Sec. 3.3, Eq. 3), or by concatenation with z_t for spatial conditions.
"""

from __future__ import annotations

PIXEL_COLOUR = "#fde9d9"
LATENT_COLOUR = "#dde8f6"
CONDITION_COLOUR = "#e3f1df"


def _box(ax, x: float, y: float, width: float, height: float, text: str, colour: str = "white") -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.05",
                                facecolor=colour, edgecolor="black", linewidth=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], text: str = "", dashed: bool = False,
           curve: float = 0.0) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(
        arrowstyle="-|>", color="black", linewidth=1.2, linestyle="--" if dashed else "-",
        connectionstyle=f"arc3,rad={curve}"))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.1, (start[1] + end[1]) / 2, text, fontsize=8, ha="left", va="center",
                style="italic")


def _panel(ax, x0: float, x1: float, y0: float, y1: float, colour: str, title: str) -> None:
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=colour, edgecolor="none", zorder=-1))
    ax.text(x0 + 0.15, y1 - 0.2, title, ha="left", va="top", fontsize=10, weight="bold")


def ldm_diagram():
    """Draw the latent diffusion pipeline of paper Fig. 3 (x -> E -> z -> UNet + tau(y) -> D -> x~); return the Figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(15, 5.2))
    ax.set_xlim(0, 16.2)
    ax.set_ylim(0, 6.2)
    ax.axis("off")
    _panel(ax, 0.05, 3.35, 2.3, 6.1, PIXEL_COLOUR, "pixel space")
    _panel(ax, 3.5, 12.75, 2.3, 6.1, LATENT_COLOUR, "latent space ($f = H/h$)")
    _panel(ax, 12.9, 16.15, 2.3, 6.1, PIXEL_COLOUR, "pixel space")
    _panel(ax, 4.6, 10.4, 0.05, 2.15, CONDITION_COLOUR, "conditioning")

    row = 4.1
    _box(ax, 0.85, row, 1.3, 1.0, "image $x$\n$3 \\times H \\times W$")
    _box(ax, 2.5, row, 1.1, 1.0, "encoder\n$\\mathcal{E}$")
    _box(ax, 4.45, row, 1.4, 1.0, "latent $z = \\mathcal{E}(x)$\n$c \\times h \\times w$")
    _box(ax, 6.4, row, 1.6, 1.0, "diffusion\n$q(z_t \\mid z)$\nadds noise")
    _box(ax, 8.0, row, 0.9, 1.0, "$z_t$")
    _box(ax, 10.1, row, 2.2, 1.7, "denoising U-Net\n$\\epsilon_\\theta(z_t, t, \\tau_\\theta(y))$\nResBlocks +\ncross-attention")
    _box(ax, 12.1, row, 0.8, 1.0, "$\\tilde{z}$")
    _box(ax, 13.75, row, 1.1, 1.0, "decoder\n$\\mathcal{D}$")
    _box(ax, 15.35, row, 1.3, 1.0, "$\\tilde{x} = \\mathcal{D}(\\tilde{z})$\n$3 \\times H \\times W$")
    for start, end in [(1.5, 1.95), (3.05, 3.75), (5.15, 5.6), (7.2, 7.55), (8.45, 9.0), (11.2, 11.7),
                       (12.5, 13.2), (14.3, 14.7)]:
        _arrow(ax, (start, row), (end, row))
    _arrow(ax, (10.6, row + 0.9), (8.1, row + 0.55), "", curve=0.45)
    ax.text(9.35, row + 1.62, "repeat T times: $z_t \\to z_{t-1}$", fontsize=8, ha="center", style="italic")

    _box(ax, 5.9, 1.0, 2.0, 1.05, "condition $y$\nclass, text, layout,\nsemantic map, image")
    _box(ax, 8.4, 1.0, 1.4, 1.05, "$\\tau_\\theta$\n(domain encoder)")
    _arrow(ax, (6.95, 1.0), (7.65, 1.0))
    _arrow(ax, (9.1, 1.35), (9.7, row - 0.9), "K, V (cross-attn)")
    _arrow(ax, (5.9, 1.55), (7.8, row - 0.55), "concat", dashed=True)
    ax.set_title("Latent Diffusion Model: perceptual compression + latent diffusion (Rombach et al. 2022, Fig. 3)",
                 fontsize=11)
    fig.tight_layout()
    return fig
