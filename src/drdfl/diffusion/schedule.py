"""Noise schedules as data: ``β_t``, ``α_t`` and ``ᾱ_t`` as tensors indexed by ``t = 0..T``.

Timesteps follow Ho et al. (2020): ``t = 1`` is the lowest noise level, ``t = T`` the
highest, and index 0 is the clean data (``β_0 = 0``, ``ᾱ_0 = 1``), so every tensor here
is indexed by the timestep itself. Coefficients are kept in float64: with the paper's
schedule ``ᾱ_T`` is about 1e-17, and ratios of such numbers lose all precision in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from drdfl.errors import ConfigError

SCHEDULE_KINDS = ("linear", "cosine")
#: variances of a stochastic reverse step ``x_t → x_s``: the forward posterior's
#: ``β̃ = (1 − ᾱ_s)/(1 − ᾱ_t) · (1 − ᾱ_t/ᾱ_s)``, the forward process's own
#: ``1 − ᾱ_t/ᾱ_s`` (``β_t`` for a single step; Ho et al. (2020) §3.2 use both) or their
#: geometric mean (the midpoint of Nichol & Dhariwal's (2021) log-space interpolation)
REVERSE_VARIANCES = ("posterior", "forward", "geometric")


@dataclass(frozen=True)
class NoiseSchedule:
    """The forward process ``q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I)``.

    ``betas`` has ``T + 1`` entries with ``betas[0] = 0``; ``kind`` and ``params`` say how
    it was built (for saving and for comparing configurations); ``variance`` is the
    variance of the stochastic reverse steps (one of :data:`REVERSE_VARIANCES`).
    """

    betas: torch.Tensor
    kind: str = "custom"
    params: dict[str, Any] = field(default_factory=dict)
    variance: str = "posterior"
    alphas: torch.Tensor = field(init=False, repr=False)
    alpha_bars: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.shape[0] < 2:
            raise ConfigError(
                f"noise schedule: expected T + 1 >= 2 betas, got {tuple(betas.shape)}"
            )
        if self.variance not in REVERSE_VARIANCES:
            raise ConfigError(
                f"noise schedule: unknown reverse variance {self.variance!r}; expected one of "
                f"{REVERSE_VARIANCES}"
            )
        if betas[0] != 0:
            raise ConfigError("noise schedule: betas[0] must be 0 (index 0 is the clean data)")
        inner = betas[1:]
        if not bool(((inner > 0) & (inner < 1)).all()):
            raise ConfigError("noise schedule: every beta_t for t >= 1 must lie in (0, 1)")
        alphas = 1.0 - betas
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas", alphas)
        object.__setattr__(self, "alpha_bars", torch.cumprod(alphas, dim=0))

    @classmethod
    def linear(cls, T: int, beta_start: float, beta_end: float) -> NoiseSchedule:
        """``β_t`` linear from ``beta_start`` (t = 1) to ``beta_end`` (t = T)."""
        _check_T(T)
        if not 0 < beta_start <= beta_end < 1:
            raise ConfigError(
                f"linear schedule: need 0 < beta_start <= beta_end < 1, "
                f"got beta_start={beta_start}, beta_end={beta_end}"
            )
        inner = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        return cls(
            torch.cat([torch.zeros(1, dtype=torch.float64), inner]),
            "linear",
            {"T": T, "beta_start": beta_start, "beta_end": beta_end},
        )

    @classmethod
    def cosine(cls, T: int, offset: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Nichol & Dhariwal's cosine schedule ``ᾱ_t ∝ cos²((t/T + s)/(1 + s) · π/2)``."""
        _check_T(T)
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
        inner = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
        return cls(
            torch.cat([torch.zeros(1, dtype=torch.float64), inner]),
            "cosine",
            {"T": T, "offset": offset, "max_beta": max_beta},
        )

    @classmethod
    def build(
        cls,
        kind: str,
        T: int,
        beta_start: float,
        beta_end: float,
        variance: str = "posterior",
    ) -> NoiseSchedule:
        """The schedule named ``kind`` (``linear`` uses the betas; ``cosine`` ignores them)
        with reverse steps of ``variance``."""
        if kind == "linear":
            built = cls.linear(T, beta_start, beta_end)
        elif kind == "cosine":
            built = cls.cosine(T)
        else:
            raise ConfigError(f"unknown noise schedule {kind!r}; expected one of {SCHEDULE_KINDS}")
        return cls(built.betas, built.kind, built.params, variance)

    @property
    def T(self) -> int:
        """Number of noising steps."""
        return int(self.betas.shape[0] - 1)

    def gather(self, table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``table[t]`` cast to ``like``'s dtype/device and shaped to broadcast over ``like``.

        ``t`` holds one timestep per leading row of ``like``.
        """
        values = table[t.detach().cpu().long()]
        values = values.to(device=like.device, dtype=like.dtype)
        return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """A draw of ``x_t`` from ``q(x_t | x_0)`` given the standard normal ``noise``."""
        ab = self.gather(self.alpha_bars, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def posterior_variance(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Variance of ``q(x_s | x_t, x_0)`` for ``s < t`` (float64; 0 when ``s = 0``)."""
        ab_t, ab_s = self._pair(t, s)
        return (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)

    def step_coefficients(
        self, t: torch.Tensor, s: torch.Tensor, eta: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c_x, c_ε, σ²)`` of the reverse step ``x_t → x_s`` (float64, one per timestep
        pair): ``mean = c_x x_t + c_ε ε`` and the step's variance.

        The DDIM family (Song et al., 2021) with stochasticity ``eta``: the mean is the one
        whose marginals match for variance ``eta² β̃`` (:meth:`posterior_variance`); the
        noise added is ``eta² β̃`` (``variance="posterior"``), ``eta² (1 − ᾱ_t/ᾱ_s)``
        (``"forward"``: the same mean with the forward process's larger variance, Ho et
        al.'s other choice) or the geometric mean of the two (``"geometric"``). ``eta = 1``
        is DDPM, ``eta = 0`` deterministic DDIM.
        """
        if not 0.0 <= eta <= 1.0:
            raise ConfigError(f"sampler eta must lie in [0, 1], got {eta}")
        ab_t, ab_s = self._pair(t, s)
        posterior = eta**2 * (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)
        c_x = (ab_s / ab_t).sqrt()
        c_eps = (1 - ab_s - posterior).clamp(min=0).sqrt() - c_x * (1 - ab_t).sqrt()
        forward = eta**2 * (1 - ab_t / ab_s)
        var = {
            "posterior": posterior,
            "forward": forward,
            "geometric": (posterior * forward).sqrt(),
        }[self.variance]
        return c_x, c_eps, var

    def reverse_mean_std(
        self,
        x_t: torch.Tensor,
        eps: torch.Tensor,
        t: torch.Tensor,
        s: torch.Tensor,
        eta: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the reverse step ``x_t → x_s`` given predicted noise
        (coefficients from :meth:`step_coefficients`).

        Written in ε-form (``mean = c_x x_t + c_ε ε``) rather than through a predicted
        ``x_0``, which would divide by ``sqrt(ᾱ_t)`` (≈ 1e-8 at high noise). ``t`` and ``s``
        hold one timestep per leading row of ``x_t``; ``std`` broadcasts like the mean.
        Differentiable in ``eps``.
        """
        c_x, c_eps, var = self.step_coefficients(t, s, eta)
        shape = (-1,) + (1,) * (x_t.ndim - 1)
        cast = {"device": x_t.device, "dtype": x_t.dtype}
        mean = c_x.to(**cast).reshape(shape) * x_t + c_eps.to(**cast).reshape(shape) * eps
        return mean, var.sqrt().to(**cast).reshape(shape)

    def _pair(self, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(t).detach().cpu().long().reshape(-1)
        s = torch.as_tensor(s).detach().cpu().long().reshape(-1)
        if bool((t < 1).any() | (t > self.T).any() | (s < 0).any() | (s >= t).any()):
            raise ConfigError(f"reverse step needs 0 <= s < t <= T = {self.T}")
        return self.alpha_bars[t], self.alpha_bars[s]

    def to_dict(self) -> dict[str, Any]:
        """Kind and parameters (the betas themselves for a custom schedule)."""
        d: dict[str, Any] = {"kind": self.kind, **self.params, "variance": self.variance}
        if self.kind == "custom":
            d["betas"] = self.betas.tolist()
        return d


def _check_T(T: int) -> None:
    if not isinstance(T, int) or T < 1:
        raise ConfigError(f"noise schedule: T must be a positive integer, got {T!r}")
