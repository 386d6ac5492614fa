"""A Gaussian mixture and its exact denoiser: a "perfectly trained network" for any sampler (notebook 08).

For p(x_0) = sum_k w_k N(mu_k, s_k^2 I) the minimum-MSE denoiser E[x_0 | x_0 + sigma eps] has a
closed form (Tweedie's formula; Karras et al. 2022, Sec. 2). Used as the model of
`minildm.diffusion.sample`, it separates the sampler's error from the network's: every difference
between samplers is then discretisation error of the reverse process, so quality-vs-steps curves
measure the samplers alone. With every s_k = 0 the mixture is a finite data set, and its denoiser is
what a network trained to zero loss on that data would learn (its samples are training points).
"""

from __future__ import annotations

import math

import torch

from minildm.diffusion.schedules import NoiseSchedule


class GaussianMixture:
    """p(x_0) = sum_k w_k N(mu_k, s_k^2 I), with its exact denoiser (the ideal network).

    Noising x = x_0 + sigma eps keeps it a mixture, p(x) = sum_k w_k N(mu_k, (s_k^2 + sigma^2) I),
    and the minimum-MSE denoiser (Tweedie's formula; Karras et al. 2022, Sec. 2) is
        D(x, sigma) = E[x_0 | x] = sum_k r_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k)),
        r_k(x) = w_k N(x; mu_k, (s_k^2 + sigma^2) I) / p(x)            (responsibilities).
    With every s_k = 0 the mixture is a finite data set and D is the denoiser that a network
    trained to zero loss on it would learn: its samples are training points (memorisation).

    Args:
        means: (K, ...) component means; each sample has shape means.shape[1:].
        stds: the components' standard deviation(s) s_k, a number or (K,) (0 = a point mass).
        weights: (K,) mixture weights (normalised here); uniform when None.
    """

    def __init__(self, means: torch.Tensor, stds: float | torch.Tensor = 0.0, weights: torch.Tensor | None = None):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim < 2:
            raise ValueError(f"means must have shape (K, ...) with one row per component, got {tuple(means.shape)}")
        k = means.shape[0]
        stds = torch.as_tensor(stds, dtype=torch.float64).expand(k).clone()
        if bool((stds < 0).any()):
            raise ValueError("stds must be >= 0")
        weights = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (k,) or bool((weights <= 0).any()):
            raise ValueError(f"weights must be {k} positive numbers (one per component), got shape {tuple(weights.shape)}")
        self.event_shape = tuple(means.shape[1:])
        self.means = means.reshape(k, -1)  # (K, D)
        self.stds = stds  # (K,)
        self.weights = weights / weights.sum()  # (K,)

    @classmethod
    def ring(cls, num_components: int = 8, radius: float = 1.0, std: float = 0.1) -> GaussianMixture:
        """`num_components` equal 2-D Gaussians evenly spaced on a circle (a classic toy target)."""
        angles = torch.arange(num_components, dtype=torch.float64) * 2 * math.pi / num_components
        return cls(radius * torch.stack([angles.cos(), angles.sin()], dim=1), std)

    @property
    def dim(self) -> int:
        """Number of coordinates D of one sample."""
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact samples (n, ...) as float32."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[k] + self.stds[k, None] * noise  # (n, D)
        return x.reshape(n, *self.event_shape).float()

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """E[x_0 | x] for x = x_0 + sigma eps: (B, ...) and sigma > 0 (a number or (B,)) -> (B, ...)."""
        b = x.shape[0]
        xf = x.detach().reshape(b, -1).to(torch.float64).cpu()  # (B, D)
        if xf.shape[1] != self.dim:
            raise ValueError(f"samples have {xf.shape[1]} coordinates, the mixture has {self.dim}")
        sigma = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu().expand(b)[:, None]  # (B, 1)
        var = self.stds[None] ** 2 + sigma**2  # (B, K): variance of each noisy component
        sq_dist = torch.cdist(xf, self.means).pow(2)  # (B, K)
        log_r = self.weights.log()[None] - 0.5 * self.dim * var.log() - sq_dist / (2 * var)
        r = torch.softmax(log_r, dim=1)  # (B, K) responsibilities
        shrink = self.stds[None] ** 2 / var  # (B, K): how far each component's posterior mean follows x
        x0 = r @ self.means + (r * shrink).sum(1, keepdim=True) * xf - (r * shrink) @ self.means  # (B, D)
        return x0.reshape(x.shape).to(dtype=x.dtype, device=x.device)

    def model_fn(self, schedule: NoiseSchedule, objective: str = "eps"):
        """The ideal network for `schedule`: model_fn(x_t, t) -> eps (or x0) for minildm.diffusion.sample.

        Converts the variance-preserving x_t at (continuous) timestep t to the sigma scale,
        x = x_t sqrt(sigma^2 + 1), and returns eps = (x - D(x, sigma)) / sigma or D itself.
        """
        if objective not in ("eps", "x0"):
            raise ValueError(f"GaussianMixture.model_fn supports objective 'eps' or 'x0', got {objective!r}")

        def fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = torch.as_tensor(t).expand(x_t.shape[0])  # (B,)
            sigma = schedule.t_to_sigma(t).cpu()  # (B,) float64
            sigma_b = sigma.view(-1, *([1] * (x_t.ndim - 1))).to(x_t.device)
            x = x_t.double() * (sigma_b**2 + 1).sqrt()  # VP -> sigma scale
            x0 = self.denoise(x, sigma)
            out = (x - x0) / sigma_b if objective == "eps" else x0
            return out.to(x_t.dtype)

        return fn
