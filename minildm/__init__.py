"""minildm: Latent Diffusion Models (Rombach et al., CVPR 2022), built one readable piece at a time."""

__version__ = "0.1.0"
