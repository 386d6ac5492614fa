"""Noise schedules: the betas beta_1..beta_T of the forward process and what follows from them.

The forward process (Ho et al. 2020, Eq. 2; LDM paper Sec. 3.1) adds Gaussian noise in T small
steps, q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I). Everything a sampler or a loss
needs is a function of the cumulative product

    alpha_bar_t = prod_{s <= t} (1 - beta_s),      q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I).

Equivalent ways to say "how noisy is step t" (all stored or computed by `NoiseSchedule`):

    SNR(t)    = alpha_bar_t / (1 - alpha_bar_t)             signal-to-noise ratio
    lambda(t) = log SNR(t) / 2 = log(alpha_t / sigma_vp_t)   log-SNR used by DPM-Solver
    sigma(t)  = sqrt((1 - alpha_bar_t) / alpha_bar_t)        noise level of x_t / sqrt(alpha_bar_t),
                                                             the "time" of Karras et al. 2022 samplers

Naming trap (say it once, loudly): the CompVis code calls the schedule that is linear in
sqrt(beta) "linear", and the plain linear one "sqrt_linear". minildm (like diffusers) names
them for what they are: `scaled_linear` and `linear`. Use `compvis_schedule` when reading a
CompVis config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

SCHEDULE_NAMES = ("scaled_linear", "linear", "cosine")
INTERPOLATIONS = ("log", "linear")
"""How noise levels between integer timesteps are read: log sigma or sigma linear in t (NoiseSchedule.t_to_sigma)."""

DEFAULT_BETA_RANGE = {
    "scaled_linear": (0.00085, 0.012),  # Stable Diffusion / LDM text-to-image (REFERENCE.md)
    "linear": (1e-4, 0.02),  # Ho et al. 2020, Sec. 4
}

COMPVIS_TO_MINILDM = {
    "linear": "scaled_linear",
    "sqrt_linear": "linear",
    "cosine": "cosine",
}


def scaled_linear_betas(num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """betas linear in sqrt(beta): linspace(sqrt(b0), sqrt(b1), T)^2, in float64 (CompVis "linear")."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2


def linear_betas(num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """betas linear in beta: linspace(b0, b1, T) in float64 (Ho et al. 2020; CompVis "sqrt_linear")."""
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, Eq. 17): alpha_bar(t) = cos^2((t/T + s)/(1 + s) * pi/2).

    beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1), clipped at `max_beta` to avoid a singular last step.
    """
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    alpha_bar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)


def make_betas(
    name: str,
    num_timesteps: int = 1000,
    beta_start: float | None = None,
    beta_end: float | None = None,
) -> torch.Tensor:
    """Betas of schedule `name` (one of SCHEDULE_NAMES) as a float64 tensor of length `num_timesteps`.

    `beta_start`/`beta_end` default to DEFAULT_BETA_RANGE[name] (SD's 0.00085/0.012 for
    scaled_linear, DDPM's 1e-4/0.02 for linear); the cosine schedule takes no range.
    """
    if name not in SCHEDULE_NAMES:
        hint = f" (a CompVis name? use compvis_schedule({name!r}))" if name in COMPVIS_TO_MINILDM else ""
        raise ValueError(f"unknown beta schedule {name!r}{hint}; valid names: {', '.join(SCHEDULE_NAMES)}")
    if num_timesteps < 2:
        raise ValueError(f"num_timesteps must be >= 2, got {num_timesteps}")
    if name == "cosine":
        if beta_start is not None or beta_end is not None:
            raise ValueError("the cosine schedule has no beta_start/beta_end; leave them as None")
        return cosine_betas(num_timesteps)
    default_start, default_end = DEFAULT_BETA_RANGE[name]
    beta_start = default_start if beta_start is None else beta_start
    beta_end = default_end if beta_end is None else beta_end
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    maker = scaled_linear_betas if name == "scaled_linear" else linear_betas
    return maker(num_timesteps, beta_start, beta_end)


def compvis_schedule(
    name: str,
    num_timesteps: int = 1000,
    linear_start: float = 1e-4,
    linear_end: float = 2e-2,
) -> NoiseSchedule:
    """The schedule a CompVis config means by `beta_schedule: name` (with its `linear_start/end`).

    WARNING, naming trap: in CompVis/latent-diffusion and Stable Diffusion configs
      "linear"      means linspace(sqrt(b0), sqrt(b1))^2 -> minildm "scaled_linear",
      "sqrt_linear" means linspace(b0, b1)               -> minildm "linear",
      "cosine"      means the cosine schedule            -> minildm "cosine".
    A CompVis "linear" LDM therefore trains on `scaled_linear` betas. The defaults here are
    CompVis' own defaults (1e-4, 2e-2); the released LDM/SD configs override them.
    """
    if name not in COMPVIS_TO_MINILDM:
        raise ValueError(f"unknown CompVis beta_schedule {name!r}; valid names: {', '.join(COMPVIS_TO_MINILDM)}")
    ours = COMPVIS_TO_MINILDM[name]
    if ours == "cosine":
        return NoiseSchedule.from_name("cosine", num_timesteps)
    return NoiseSchedule.from_name(ours, num_timesteps, linear_start, linear_end)


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """An immutable discrete noise schedule: betas (float64) and the quantities derived from them.

    Everything is computed and stored in float64 (cumulative products of 1000 factors lose
    precision in float32); functions that use the schedule cast to their input's dtype.
    Index t runs over 0..T-1 (t = 0 is the least noisy step), as in diffusers and CompVis.
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor = field(init=False)
    sigmas: torch.Tensor = field(init=False)
    log_sigmas: torch.Tensor = field(init=False)
    _on_device: dict = field(init=False, repr=False)  # (name, device, dtype) -> a copy of a float64 table

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or len(betas) < 2:
            raise ValueError(f"betas must be a 1-D tensor with at least 2 entries, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("every beta must lie in (0, 1)")
        alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_cumprod", alphas_cumprod)
        object.__setattr__(self, "sigmas", sigmas)
        object.__setattr__(self, "log_sigmas", sigmas.log())
        object.__setattr__(self, "_on_device", {})

    @classmethod
    def from_name(
        cls,
        name: str,
        num_timesteps: int = 1000,
        beta_start: float | None = None,
        beta_end: float | None = None,
    ) -> NoiseSchedule:
        """Build from a schedule name, see `make_betas`."""
        return cls(make_betas(name, num_timesteps, beta_start, beta_end))

    @property
    def num_timesteps(self) -> int:
        """T, the number of training timesteps."""
        return len(self.betas)

    @property
    def alphas(self) -> torch.Tensor:
        """alpha_t = 1 - beta_t."""
        return 1 - self.betas

    @property
    def sqrt_alphas_cumprod(self) -> torch.Tensor:
        """sqrt(alpha_bar_t): how much of x_0 is left in x_t."""
        return self.alphas_cumprod.sqrt()

    @property
    def sqrt_one_minus_alphas_cumprod(self) -> torch.Tensor:
        """sqrt(1 - alpha_bar_t): the standard deviation of the noise in x_t."""
        return (1 - self.alphas_cumprod).sqrt()

    @property
    def log_snrs(self) -> torch.Tensor:
        """lambda_t = log(sqrt(alpha_bar_t) / sqrt(1 - alpha_bar_t)) = -log sigma_t for every t."""
        return -self.log_sigmas

    def table(self, name: str, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
        """A per-timestep table (e.g. "alphas_cumprod") cast to `dtype` on `device`, made once and kept.

        Training looks up alpha_bar_t at timesteps drawn on the GPU; indexing a copy that already
        lives there avoids a device-to-host round trip (a wait for the GPU) at every step.
        """
        key = (name, str(torch.device(device)), dtype)
        if key not in self._on_device:
            self._on_device[key] = getattr(self, name).to(dtype).to(device)  # cast on the CPU: MPS has no float64
        return self._on_device[key]

    @property
    def snrs(self) -> torch.Tensor:
        """SNR_t = alpha_bar_t / (1 - alpha_bar_t) for every t (float64)."""
        return self.alphas_cumprod / (1 - self.alphas_cumprod)

    def snr(self, t: torch.Tensor | int) -> torch.Tensor:
        """SNR(t) = alpha_bar_t / (1 - alpha_bar_t) at integer timesteps t.

        float64 for timesteps on the CPU; on an accelerator, float32 on t's device (no host round trip).
        """
        t = torch.as_tensor(t)
        if t.device.type == "cpu":
            return self.snrs[t.long()]
        return self.table("snrs", t.device, torch.float32)[t.long()]

    def log_snr(self, t: torch.Tensor | int) -> torch.Tensor:
        """lambda(t) = log(alpha_t / sigma_vp_t) = log SNR(t) / 2 at integer timesteps t (float64)."""
        return self.log_snrs[torch.as_tensor(t, device="cpu").long()]

    def at(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar_t for a batch of integer timesteps t (B,), shaped to broadcast against `like` (B, ...).

        Timesteps on the CPU are range-checked with a clear error; on an accelerator the check
        would make the host wait for the device at every training step, so it is left out there
        (the trainer draws t itself, in range).
        """
        t = torch.as_tensor(t, device=like.device).long()
        if t.ndim == 0:
            t = t.expand(like.shape[0])
        if t.ndim != 1 or t.shape[0] != like.shape[0]:
            raise ValueError(f"t must be a scalar or have shape ({like.shape[0]},), got {tuple(t.shape)}")
        if t.device.type == "cpu" and (int(t.min()) < 0 or int(t.max()) >= self.num_timesteps):
            raise ValueError(f"timesteps must lie in [0, {self.num_timesteps - 1}], got {t.min()}..{t.max()}")
        table = self.alphas_cumprod if like.device.type == "cpu" else self.table("alphas_cumprod", like.device, like.dtype)
        return table[t].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def sigma_to_t(self, sigma: torch.Tensor, interpolation: str = "log") -> torch.Tensor:
        """Continuous timestep for noise level sigma: the inverse of `t_to_sigma`.

        Exact (up to rounding) at the training sigmas; in between, linear interpolation of log sigma
        (interpolation="log") or of sigma (interpolation="linear"). Values outside
        [sigma_0, sigma_{T-1}] clamp to t = 0 or T - 1. Computed in float64 on the CPU; returns
        float64 on sigma's device (float32 on MPS, which has no float64).
        """
        table, value = self._interpolation_table(interpolation), sigma.detach().cpu().to(torch.float64).contiguous()
        value = value.clamp(min=1e-10).log() if interpolation == "log" else value
        low = (torch.searchsorted(table, value, right=True) - 1).clamp(0, self.num_timesteps - 2)
        w = ((value - table[low]) / (table[low + 1] - table[low])).clamp(0, 1)
        return _to_device(low + w, sigma.device)

    def t_to_sigma(self, t: torch.Tensor, interpolation: str = "log") -> torch.Tensor:
        """Noise level sigma at a continuous timestep t in [0, T-1] (float64).

        Between integer timesteps log sigma (interpolation="log", minildm's default) or sigma itself
        (interpolation="linear", how diffusers' Euler-type schedulers read fractional timesteps)
        is linear in t.
        """
        table = self._interpolation_table(interpolation)
        t_cpu = t.detach().cpu().to(torch.float64).clamp(0, self.num_timesteps - 1)
        low = t_cpu.floor().long().clamp(max=self.num_timesteps - 2)
        w = t_cpu - low
        value = (1 - w) * table[low] + w * table[low + 1]
        return _to_device(value.exp() if interpolation == "log" else value, t.device)

    def _interpolation_table(self, interpolation: str) -> torch.Tensor:
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {interpolation!r}; valid values: {', '.join(INTERPOLATIONS)}")
        return self.log_sigmas if interpolation == "log" else self.sigmas


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a float64 CPU tensor to `device`, as float32 where float64 is unsupported (MPS)."""
    return x.to(torch.float32).to(device) if device.type == "mps" else x.to(device)
