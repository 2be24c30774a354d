"""3D-Learning's ambiguity sets: where the adversary may move θ, and how it moves there.

Each set is a strategy with its own parameter model; :class:`ThreeDLearning` owns θ₀, the
adversary θ, the pool of states at T′ and the tails, and calls its set to size the budget,
run the inner maximisation and report what it measured (``docs/threed.md`` explains both
sets and what the runs showed):

* :class:`PathKLSet` (``"pathkl"``): a ball in the exact KL between θ's and θ₀'s reverse
  tails, held after every ascent step by a projection; optionally with a budgeted level
  direction;
* :class:`PaperSet` (``"paper"``): the paper's budget on the score-matching loss of noised
  real segments, held by a dual variable.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from drdfl.diffusion.ddpm import score_matching_loss
from drdfl.diffusion.divergence import path_kl
from drdfl.diffusion.model import DiffusionModel
from drdfl.diffusion.samplers import run_tail
from drdfl.diffusion.schedule import NoiseSchedule
from drdfl.diffusion.segments import random_segments
from drdfl.diffusion.trajectory import Transitions, trajectory_log_prob
from drdfl.errors import ConfigError
from drdfl.schema import StrictModel

#: default path-KL budget, nats per segment slot: the largest of 0.02, 0.05, 0.1 and 0.2
#: whose adversarial samples a crop discriminator told from real data no better than
#: θ₀'s samples on the honest and paper suites (docs/threed.md)
DEFAULT_BUDGET_PER_SLOT = 0.02
#: the paper's ε
DEFAULT_PAPER_BUDGET = 0.03
#: shrinks tried per projection before falling back to θ = θ₀
_MAX_SHRINKS = 8


class PathKLParams(StrictModel):
    """The path-KL set's own knobs."""

    alpha_bar_min: float = Field(
        0.5, gt=0, lt=1, description="T′ by noise level: the last steps with ᾱ_t ≥ this"
    )
    tail_steps: int | None = Field(
        10, ge=1, description="strided DDPM steps the adversary runs from T′ to 0 (None: all)"
    )
    adversary_steps: int = Field(2, ge=1, description="projected ascent steps on θ per epoch")
    kl_weight: float = Field(
        0.1, ge=0, description="penalty on the path KL (per budget) in each ascent step"
    )
    kl_margin: float = Field(
        0.9, gt=0, le=1, description="projection target on the step's own trajectories, × budget"
    )
    level_scale: float = Field(
        0.0,
        ge=0,
        description="τ of the structured level direction: each segment's demand × exp(ℓ), "
        "ℓ ~ N(0, τ²) under θ₀, N(μ, s²) under the adversary, its KL in the same budget "
        "(0: off)",
    )
    level_lr: float = Field(0.05, gt=0, description="Adam lr on the level direction")


class PaperParams(StrictModel):
    """The paper's set's own knobs (its values in the descriptions)."""

    budget_mode: Literal["excess", "absolute"] = Field(
        "excess", description="bound J(θ) − J(θ₀) (excess) or J(θ) itself (absolute)"
    )
    kappa: float = Field(0.4, gt=0, lt=1, description="ratio clip κ (0.4)")
    dual_lr: float = Field(0.01, gt=0, description="η_α (0.01)")
    alpha0: float = Field(1.0, ge=0, description="initial dual variable α₀ (1)")
    inner_epochs: int = Field(10, ge=1, description="K (10)")
    estimator: Literal["pathwise", "ratio"] = Field(
        "pathwise",
        description="gradient of E_θ[L]: through the sampled tail ('pathwise') or the "
        "paper's clipped likelihood ratio ('ratio')",
    )
    sampling: Literal["tail", "full"] = Field(
        "tail",
        description="adversarial samples: θ runs the last T′ steps from θ₀'s states ('tail'),"
        " or the whole reverse chain ('full', the paper)",
    )
    j_segments: int = Field(32, ge=1, description="real segments per J estimate")
    trajectories: int = Field(64, ge=2, description="pool trajectories per inner maximisation")


def t_prime_for_noise_level(schedule: NoiseSchedule, alpha_bar_min: float) -> int:
    """The number of last reverse steps whose ``ᾱ_t ≥ alpha_bar_min``."""
    count = int((schedule.alpha_bars[1:] >= alpha_bar_min).sum())
    if count < 1:
        raise ConfigError(
            f"method_params.threed.alpha_bar_min: {alpha_bar_min} leaves no reverse step "
            f"(ᾱ_1 = {float(schedule.alpha_bars[1]):.4g})"
        )
    return count


class AmbiguitySet(ABC):
    """Where the adversary of a :class:`ThreeDLearning` may move θ, and how it gets there."""

    #: the value of ``method_params.threed.ambiguity`` that picks this set
    name: ClassVar[str]
    Params: ClassVar[type[StrictModel]]
    #: Adam learning rate on θ when ``adversary_lr`` is not given
    default_lr: ClassVar[float]
    #: whether each inner maximisation starts at θ₀ when ``restart`` is not given
    default_restart: ClassVar[bool]

    def __init__(self, params: Any, method: Any) -> None:
        """``method``: the :class:`~drdfl.methods.threed.ThreeDLearning` the set serves (its
        θ₀, adversary, pool and tails)."""
        self.params = params
        self.method = method

    @abstractmethod
    def size(self, budget: float | None, segment_length: int) -> float:
        """The budget in the set's own units per segment, from the ``budget`` parameter."""

    @abstractmethod
    def t_prime(self, schedule: NoiseSchedule) -> int:
        """T′ when ``t_prime`` is not given."""

    def tail_steps(self, t_prime: int) -> int:
        """Reverse steps the tail from T′ takes."""
        return t_prime

    def prepare(self, generator: torch.Generator) -> None:
        """Build what the set needs once θ₀ and the pool exist."""
        return None

    @abstractmethod
    def maximise(self, forecaster: nn.Module, generator: torch.Generator) -> None:
        """Move the method's adversary θ towards high-loss samples inside the set."""

    def reset(self) -> None:
        """Undo the set's own moves (θ itself is reset by the method)."""
        return None

    def parameters(self) -> list[torch.Tensor]:
        """What the set moves besides θ."""
        return []

    def reference_parameters(self) -> list[torch.Tensor]:
        """The values of :meth:`parameters` at the reference."""
        return []

    def divergence(self) -> torch.Tensor:
        """The set's own share of the divergence (nats per segment), besides the path KL."""
        return torch.zeros(())

    def level_factor(self, noise: torch.Tensor, adversary: bool) -> torch.Tensor | None:
        """Per-segment factors ``[n]`` on demand (``None``: the set changes no level)."""
        return None

    def segments(self, adversarial: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The adversarial segments of an epoch, given the tails' (forecaster units)."""
        return adversarial

    def record(self, slots: int) -> dict[str, float]:
        """The set's per-epoch history columns."""
        return {}

    def artifacts(self, slots: int) -> dict[str, Any]:
        """The set's entries of the fit's artifacts."""
        return {}


class PathKLSet(AmbiguitySet):
    """A ball in the exact path KL of the reverse tails, projected after every step."""

    name = "pathkl"
    Params = PathKLParams
    default_lr = 1e-3
    # the adversary follows the forecaster across epochs
    default_restart = False

    def __init__(self, params: PathKLParams, method: Any) -> None:
        super().__init__(params, method)
        # The level direction (μ/τ, log(s/τ)): zero is the reference's N(0, τ²).
        self.level = torch.zeros(2, requires_grad=True)
        self.kl_trace: list[float] = []

    def size(self, budget: float | None, segment_length: int) -> float:
        if budget is not None and budget <= 0:
            raise ConfigError(
                f"method_params.threed.budget: the path-KL budget must be > 0 nats, got "
                f"{budget} (switch the adversary off with adversary=false)"
            )
        return (budget if budget is not None else DEFAULT_BUDGET_PER_SLOT) * segment_length

    def t_prime(self, schedule: NoiseSchedule) -> int:
        return t_prime_for_noise_level(schedule, self.params.alpha_bar_min)

    def tail_steps(self, t_prime: int) -> int:
        steps = self.params.tail_steps
        return t_prime if steps is None else min(steps, t_prime)

    def prepare(self, generator: torch.Generator) -> None:
        self.level = self.level.detach().to(self.method.starts.device).requires_grad_(True)

    @property
    def leveled(self) -> bool:
        return self.params.level_scale > 0

    def parameters(self) -> list[torch.Tensor]:
        return [self.level] if self.leveled else []

    def reference_parameters(self) -> list[torch.Tensor]:
        return [torch.zeros_like(self.level)] if self.leveled else []

    def reset(self) -> None:
        with torch.no_grad():
            self.level.zero_()

    def divergence(self) -> torch.Tensor:
        """KL of the adversary's level factor ``N(τμ', τ²e^{2r})`` to ``N(0, τ²)``."""
        if not self.leveled:
            return torch.zeros((), device=self.level.device)
        m, r = self.level[0], self.level[1]
        return -r + ((2 * r).exp() + m.square()) / 2 - 0.5

    def level_factor(self, noise: torch.Tensor, adversary: bool) -> torch.Tensor | None:
        if not self.leveled:
            return None
        tau = self.params.level_scale
        m, r = (self.level[0], self.level[1]) if adversary else (0.0, torch.zeros(()))
        return (tau * (m + r.exp() * noise)).exp()

    def maximise(self, forecaster: nn.Module, generator: torch.Generator) -> None:
        method = self.method
        groups: list[dict[str, Any]] = [{"params": list(method.adversary.parameters())}]
        if self.leveled:
            groups.append({"params": [self.level], "lr": self.params.level_lr})
        opt = torch.optim.Adam(groups, lr=method.adversary_lr)
        for _ in range(self.params.adversary_steps):
            self.step(forecaster, opt, generator)

    def step(
        self, forecaster: nn.Module, opt: torch.optim.Optimizer, generator: torch.Generator
    ) -> float:
        """One pathwise ascent step on θ, then the projection onto the KL ball; returns the
        KL (nats per segment) of fresh trajectories after the projection."""
        method = self.method
        starts, noise = method.draw_starts(method.params.minibatch, generator)
        tail = method.tail(method.adversary, starts, noise)
        z = method.level_noise(len(starts), generator)
        gain = method.window_losses(method.segments(tail.samples, z, True), forecaster, generator)
        # The relative gain minus the KL in units of the budget: the penalty steers the
        # ascent towards directions that buy loss cheaply in nats, the projection
        # enforces the budget itself.
        objective = gain.mean() / gain.detach().mean().abs().clamp_min(1e-12)
        kl = tail.kl.mean() + self.divergence()
        objective = objective - self.params.kl_weight * kl / method.budget
        opt.zero_grad(set_to_none=True)
        (-objective).backward()
        nn.utils.clip_grad_norm_(method.adversary_parameters(), 1.0)
        opt.step()
        fresh_kl = self.project(starts, noise, generator)
        self.kl_trace.append(fresh_kl)
        return fresh_kl

    @torch.no_grad()
    def _mean_kl(self, starts: torch.Tensor, noise: torch.Tensor) -> float:
        method = self.method
        tail_kl = path_kl(method.adversary, method.reference, starts, method.tail_t, noise).mean()
        return float(tail_kl + self.divergence())

    @torch.no_grad()
    def project(
        self, starts: torch.Tensor, noise: torch.Tensor, generator: torch.Generator
    ) -> float:
        """Shrink θ − θ₀ along the line until the mean path KL is at most ``kl_margin ·
        budget`` on the given trajectories and at most ``budget`` on fresh ones.

        The KL grows about quadratically along the line near θ₀, so each shrink scales
        θ − θ₀ by ``sqrt(target / KL)`` (at most 0.95). If that does not get there, θ is
        reset to θ₀ (KL 0): the budget holds after every step. Returns the fresh KL.
        """
        method = self.method
        budget, target = method.budget, self.params.kl_margin * method.budget
        ref = method.reference_parameters()
        adv = method.adversary_parameters()
        delta = [a - r for a, r in zip(adv, ref, strict=True)]
        scale = 1.0

        def shrink_until(limit: float, starts_: torch.Tensor, noise_: torch.Tensor) -> float:
            """The KL on ``starts_`` once it is within ``limit`` (``inf`` if never)."""
            nonlocal scale
            kl = self._mean_kl(starts_, noise_)
            for _ in range(_MAX_SHRINKS):
                if kl <= limit:
                    return kl
                scale *= min(0.95, math.sqrt(target / kl))
                for a, r, d in zip(adv, ref, delta, strict=True):
                    a.copy_(r + scale * d)
                kl = self._mean_kl(starts_, noise_)
            return kl if kl <= limit else math.inf

        fresh_starts, fresh_noise = method.draw_starts(len(starts), generator)
        fresh_kl = math.inf
        if shrink_until(target, starts, noise) <= target:
            fresh_kl = shrink_until(budget, fresh_starts, fresh_noise)
        if fresh_kl > budget:
            method.reset_adversary()
            fresh_kl = 0.0
        return fresh_kl

    def record(self, slots: int) -> dict[str, float]:
        out = {"kl_budget": self.method.budget / slots}
        if self.leveled:
            out["level_shift"] = float(self.params.level_scale * self.level[0].detach())
        return out

    def artifacts(self, slots: int) -> dict[str, Any]:
        out: dict[str, Any] = {"budget": self.method.budget / slots}  # nats per slot
        if self.leveled:
            out["level"] = {
                "mean_log_shift": float(self.params.level_scale * self.level[0].detach()),
                "log_std": float(self.params.level_scale * self.level[1].detach().exp()),
            }
        return out


class PaperSet(AmbiguitySet):
    """The paper's budget on the excess score-matching loss of noised real segments,
    held by a dual variable after each inner epoch."""

    name = "paper"
    Params = PaperParams
    default_lr = 1e-4
    default_restart = True

    def size(self, budget: float | None, segment_length: int) -> float:
        return budget if budget is not None else DEFAULT_PAPER_BUDGET

    def t_prime(self, schedule: NoiseSchedule) -> int:
        return min(10, schedule.T)

    def prepare(self, generator: torch.Generator) -> None:
        """The stored θ₀ transitions, their log-likelihoods and J's batch."""
        method, p = self.method, self.params
        self.alpha = p.alpha0
        # Common random numbers for J: the same segments, timesteps and noise for θ and θ₀.
        self.j_batch = torch.as_tensor(
            random_segments(
                method.series, method.reference.segment_length, p.j_segments, method.rng
            ),
            dtype=torch.float32,
        ).to(method.starts.device)
        self.j_seed = int(method.rng.integers(2**31))
        self.j_ref = float(self.score_matching(method.reference).detach())
        starts = method.train_starts
        _, states = run_tail(
            method.reference.eps,
            method.reference.schedule,
            starts,
            method.tail_t,
            method.noise(len(starts), generator),
        )
        self.pool = Transitions(states, method.tail_t, 1.0)
        with torch.no_grad():
            self.pool_ref_logp = torch.cat(
                [
                    trajectory_log_prob(method.reference, self.pool.subset(slice(i, i + 64)))
                    for i in range(0, len(self.pool), 64)
                ]
            )
        self._record: dict[str, float] = {}

    def score_matching(self, model: DiffusionModel) -> torch.Tensor:
        """J(model) on the fixed batch of real segments, with fixed timesteps and noise."""
        gen = torch.Generator().manual_seed(self.j_seed)
        return score_matching_loss(model, self.j_batch, (1, self.method.t_prime), gen)

    def maximise(self, forecaster: nn.Module, generator: torch.Generator) -> None:
        """Ascent on ``E_θ[L] − α·J``, then a dual step on α, ``inner_epochs`` times."""
        method, p = self.method, self.params
        chosen = torch.randperm(len(self.pool), generator=generator)[: p.trajectories]
        traj = self.pool.subset(chosen)
        samples = method.reference.from_model_space(traj.samples)
        losses = method.segment_losses(method.to_forecaster_units(samples), forecaster)
        scale = (losses - losses.mean()).abs().mean().clamp_min(1e-12)
        opt = torch.optim.Adam(method.adversary.parameters(), lr=method.adversary_lr)
        noise = method.noise(len(traj), generator)
        clipped, seen = 0, 0
        j_value = self.j_ref
        for _ in range(p.inner_epochs):
            perm = torch.randperm(len(traj), generator=generator)
            for i in range(0, len(traj), method.params.minibatch):
                idx = perm[i : i + method.params.minibatch]
                if p.estimator == "pathwise":
                    x, _ = run_tail(
                        method.adversary.eps,
                        method.adversary.schedule,
                        traj.states[idx, 0],
                        traj.timesteps,
                        noise[idx],
                    )
                    tail = method.to_forecaster_units(method.adversary.from_model_space(x))
                    objective = method.window_losses(tail, forecaster, generator).mean() / scale
                else:
                    log_p = trajectory_log_prob(method.adversary, traj.subset(idx))
                    ratio = (log_p - self.pool_ref_logp[chosen][idx]).exp()
                    adv = (losses[idx] - losses.mean()) / scale
                    bounded = ratio.clamp(1 - p.kappa, 1 + p.kappa)
                    objective = torch.minimum(ratio * adv, bounded * adv).mean()
                    clipped += int((ratio.detach() - bounded.detach()).abs().gt(0).sum())
                    seen += idx.numel()
                j = self.score_matching(method.adversary)
                loss = -(objective - self.alpha * j)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(method.adversary.parameters(), 1.0)
                opt.step()
            with torch.no_grad():
                j_value = float(self.score_matching(method.adversary))
            level = j_value - self.j_ref if p.budget_mode == "excess" else j_value
            self.alpha = max(0.0, self.alpha + p.dual_lr * (level - method.budget))
        self._record = {"alpha": self.alpha, "J": j_value, "J_excess": j_value - self.j_ref}
        if p.estimator == "ratio":
            self._record["clip_frac"] = clipped / max(seen, 1)

    def segments(self, adversarial: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.params.sampling != "full":
            return adversarial
        method = self.method
        drawn = method.adversary.sample(len(adversarial), "ddpm", generator=generator)
        return method.to_forecaster_units(drawn.segments)

    def record(self, slots: int) -> dict[str, float]:
        return {"kl_budget": math.nan, **self._record}

    def artifacts(self, slots: int) -> dict[str, Any]:
        return {"budget": self.method.budget, "j_ref": self.j_ref, "alpha": self.alpha}


#: ``method_params.threed.ambiguity`` → its set
AMBIGUITY_SETS: dict[str, type[AmbiguitySet]] = {s.name: s for s in (PathKLSet, PaperSet)}

__all__ = [
    "AMBIGUITY_SETS",
    "DEFAULT_BUDGET_PER_SLOT",
    "AmbiguitySet",
    "PaperParams",
    "PaperSet",
    "PathKLParams",
    "PathKLSet",
    "t_prime_for_noise_level",
]
