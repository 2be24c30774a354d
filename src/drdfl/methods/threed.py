"""3D-Learning (``threed``): decision-focused learning against the worst case inside a
diffusion model.

Every outer epoch the adversary θ, a copy of the reference diffusion model θ₀, is moved
towards samples on which the forecaster's loss is high, inside an ambiguity set around θ₀
(:mod:`drdfl.methods.ambiguity`: the projected path-KL ball by default, the paper's set
for reproduction); then the forecaster takes its decision-focused steps on windows of θ's
samples mixed with real windows, as many as the real training set has. θ only runs the
last T′ reverse steps, from a pool of states at T′ that θ₀ reached (drawn once by DDIM).
``docs/threed.md`` explains the sets, the diagnostics and what the runs showed.

Per epoch the history holds the path KL of the epoch's adversarial samples, their regret
and that of θ₀'s tails from the same states and noise, and cheap statistics of the
adversarial set; a crop discriminator judges its realism once at the end by default
(``realism``). The artifacts hold the worst cases with the adversary on and off.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationError, model_validator
from torch import nn

from drdfl.data.training import TrainingData
from drdfl.data.windows import Scaler, describe_span
from drdfl.diffusion.divergence import Tail, tail_with_kl
from drdfl.diffusion.model import DiffusionModel, DiffusionModelConfig, get_preset, read_config
from drdfl.diffusion.quality import realism
from drdfl.diffusion.samplers import run_tail, states_at, tail_timesteps
from drdfl.diffusion.schedule import NoiseSchedule
from drdfl.diffusion.segments import segments_to_windows
from drdfl.errors import ConfigError
from drdfl.methods.ambiguity import AMBIGUITY_SETS, AmbiguitySet, PaperParams, PathKLParams
from drdfl.methods.losses import sample_losses
from drdfl.methods.reference import ReferenceParams, reference_model, to_training_units
from drdfl.methods.trainer import TrainedMethod
from drdfl.schema import validation_message
from drdfl.tasks.base import DecisionTask

#: relative tolerance on the scaler range when checking θ₀ against the training series
_RANGE_TOLERANCE = 1e-3
#: training epochs of the crop discriminator judging the adversarial samples
_REALISM_EPOCHS = 100
#: segments the final realism judgement draws
_REALISM_SEGMENTS = 64


class ThreeDParams(ReferenceParams):
    """3D-Learning's hyperparameters (paper values in the descriptions); the chosen
    ambiguity set's own knobs are given flat beside them and land in ``knobs``."""

    objective: Literal["regret", "decision", "mse"] | None = Field(
        None,
        description="forecaster objective (None: the training config's); 'mse' is the "
        "paper's Fig. 3 ablation, 3D-Learning with MSE training",
    )
    ambiguity: Literal["pathkl", "paper"] = Field(
        "pathkl",
        description="'pathkl': projected ball in the path KL of the reverse tail; 'paper': "
        "the paper's score-matching budget with dual ascent",
    )
    budget: float | None = Field(
        None,
        ge=0,
        description="size of the ambiguity set: nats per segment slot for 'pathkl' (None: "
        "0.02), ε for 'paper' (None: 0.03, the paper's)",
    )
    adversary: bool = Field(
        True, description="false: θ stays θ₀ (the same tails and mix, no adversary: the ablation)"
    )
    t_prime: int | None = Field(
        None,
        ge=1,
        description="T′ as a count of reverse steps (None: by noise level for 'pathkl', 10 "
        "for 'paper', the paper's)",
    )
    pool_steps: int = Field(10, ge=1, description="DDIM steps from T to T′ that draw the pool")
    adversary_lr: float | None = Field(
        None, gt=0, description="Adam lr on θ (None: 1e-3 'pathkl', 1e-4 'paper'; paper 1e-6)"
    )
    restart: bool | None = Field(
        None,
        description="start every inner maximisation at θ₀ (None: no for 'pathkl', whose "
        "adversary follows the forecaster across epochs; yes for 'paper')",
    )
    pool: int = Field(256, ge=4, description="states at T′ drawn once (paper: 4 × 64)")
    minibatch: int = Field(32, ge=1, description="trajectories per adversary step")
    adversarial_samples: int = Field(64, ge=1, description="segments drawn from P_θ per epoch")
    window_sample: int = Field(
        64, ge=1, description="window positions per segment priced in a pathwise step"
    )
    real_fraction: float = Field(0.3, ge=0, lt=1, description="share of real windows (0.3)")
    keep_worst: int = Field(16, ge=0, description="worst-case segments kept for the report")
    selection: Literal["validation", "adversarial"] = Field(
        "validation",
        description="early stopping on validation regret or on regret on held-out "
        "adversarial tails of the same budget",
    )
    realism: Literal["final", "every", "off"] = Field(
        "final",
        description="when a crop discriminator judges the adversarial samples and θ₀'s tails "
        "against real segments: once at the end, every epoch, or never",
    )
    knobs: PathKLParams | PaperParams = Field(
        default_factory=PathKLParams,
        description="the ambiguity set's own parameters, given flat (e.g. kl_weight)",
    )

    @model_validator(mode="before")
    @classmethod
    def _gather_knobs(cls, data: Any) -> Any:
        """Move the chosen set's knobs into ``knobs``; another set's knob is an error."""
        if not isinstance(data, dict) or "knobs" in data:
            return data
        data = dict(data)
        name = data.get("ambiguity", "pathkl")
        chosen = AMBIGUITY_SETS.get(name)
        if chosen is None:
            return data  # the ambiguity field names the valid sets
        own = {k: data.pop(k) for k in list(data) if k in chosen.Params.model_fields}
        for key in data:
            if key in cls.model_fields:
                continue
            other = next((s for s in AMBIGUITY_SETS.values() if key in s.Params.model_fields), None)
            if other is not None:
                raise ValueError(
                    f"{key} applies to ambiguity={other.name!r} only (this one is {name!r})"
                )
        try:
            data["knobs"] = chosen.Params.model_validate(own)
        except ValidationError as exc:
            raise ValueError(validation_message(exc)) from None
        return data

    def flat(self) -> dict[str, Any]:
        """Every parameter as the user gives it: the set's knobs beside the shared ones."""
        out = self.model_dump(exclude={"knobs"})
        return {**out, **self.knobs.model_dump()}


class ThreeDLearning(TrainedMethod):
    """3D-Learning (``threed``): DFL against the worst case inside a diffusion model."""

    name = "threed"
    Params = ThreeDParams

    def configure(self) -> None:
        p = self.params
        if p.objective is not None:
            self.train = self.train.model_copy(update={"objective": p.objective})
        self.set: AmbiguitySet = AMBIGUITY_SETS[p.ambiguity](p.knobs, self)
        config = self._reference_config()
        self.budget = self.set.size(p.budget, config.segment_length)
        self.adversary_lr = p.adversary_lr or self.set.default_lr
        self.restart = p.restart if p.restart is not None else self.set.default_restart
        if p.selection == "adversarial":
            self.selection = "adversarial regret (held-out tails within the budget)"
        # T′ against θ₀'s schedule, before anything is fitted or trained.
        schedule = NoiseSchedule.build(
            config.schedule, config.T, config.beta_start, config.beta_end
        )
        if p.t_prime is not None and p.t_prime > config.T:
            raise ConfigError(
                f"method_params.threed.t_prime: {p.t_prime} exceeds the diffusion "
                f"model's T = {config.T}"
            )
        self.t_prime = p.t_prime if p.t_prime is not None else self.set.t_prime(schedule)
        self.tail_t = tail_timesteps(self.t_prime, self.set.tail_steps(self.t_prime))

    def _reference_config(self) -> DiffusionModelConfig:
        d = self.params.diffusion
        if isinstance(d, DiffusionModel):
            return d.config
        if d is not None:
            return read_config(d)
        return get_preset(self.params.preset).model

    # ------------------------------------------------------------------ setup
    def prepare(
        self,
        data: TrainingData,
        task: DecisionTask,
        forecaster: nn.Module,
        generator: torch.Generator,
    ) -> None:
        p = self.params
        device = torch.device(self.train.device)
        real = data.scaler.inverse_transform(np.asarray(data.series, dtype=np.float64))
        self.reference = reference_model(
            p.diffusion, real, p.preset, p.diffusion_iterations, self.train.seed, device=device
        )
        if p.diffusion is not None:
            check_reference_series(self.reference, real)
        if self.reference.scaler is None:
            raise ConfigError("threed: the diffusion model has no scaler (real units unknown)")
        length = self.reference.segment_length
        if real.shape[0] < length:
            raise ConfigError(
                f"threed: the training series ({data.series.shape[0]} slots) is shorter than "
                f"one diffusion segment ({length} slots)"
            )
        if length < data.train.span:
            raise ConfigError(
                f"threed: diffusion segments of {length} slots cannot hold one window of "
                f"{describe_span(data.train.window, data.train.horizon, data.train.lead)}"
            )
        self.data_scaler = data.scaler
        self.reference.eval()
        for param in self.reference.parameters():
            param.requires_grad_(False)
        self.adversary = self.reference.clone()
        for param in self.adversary.parameters():
            param.requires_grad_(True)
        self.window, self.horizon = data.train.window, data.train.horizon
        self.lead = data.train.lead
        self.rng = np.random.default_rng(self.train.seed)
        self.series = self.reference.scaler.transform(real)
        self.real_series = np.asarray(data.series, dtype=np.float64)
        self.floor = float(data.scaler.transform(0.0))
        self.realism_generator = torch.Generator().manual_seed(self.train.seed)
        self.record: dict[str, float] = {}
        self.worst: np.ndarray | None = None
        self.worst_reference: np.ndarray | None = None
        self.adversary_s = 0.0
        # The pool of states at T′; a quarter is held out for adversarial model selection.
        x_T = torch.randn(p.pool, length, generator=generator).to(device)
        self.starts = states_at(
            self.reference.eps, self.reference.schedule, x_T, self.t_prime, p.pool_steps
        )
        held = max(1, p.pool // 4)
        self.train_starts, self.held_starts = self.starts[:-held], self.starts[-held:]
        self.held_noise = self.noise(held, generator)
        self.held_level_noise = self.level_noise(held, generator)
        self.set.prepare(generator)

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Standard-normal noise for ``n`` tails ``[n, K, L]``."""
        shape = (n, self.tail_t.shape[0] - 1, self.reference.segment_length)
        return torch.randn(shape, generator=generator).to(self.starts.device)

    def level_noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Standard-normal noise of ``n`` segments' level factors ``[n]``."""
        return torch.randn(n, generator=generator).to(self.starts.device)

    def draw_starts(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` states of the training pool (with replacement) and the noise of their tails."""
        pick = torch.randint(0, len(self.train_starts), (n,), generator=generator)
        starts = self.train_starts[pick.to(self.train_starts.device)]
        return starts, self.noise(n, generator)

    def adversary_parameters(self) -> list[torch.Tensor]:
        """Everything the adversary moves: θ, and what its set moves besides."""
        return [*self.adversary.parameters(), *self.set.parameters()]

    def reference_parameters(self) -> list[torch.Tensor]:
        """The values of :meth:`adversary_parameters` at the reference."""
        return [*self.reference.parameters(), *self.set.reference_parameters()]

    def reset_adversary(self) -> None:
        """The adversary back at the reference (θ = θ₀, the set's own moves undone)."""
        self.adversary.load_state_dict(self.reference.state_dict())
        self.set.reset()

    def to_forecaster_units(self, u: torch.Tensor) -> torch.Tensor:
        """Diffusion samples (the model's own normalized units) in the forecaster's units."""
        return to_training_units(self.reference, self.data_scaler, u)

    def tail(self, model: DiffusionModel, starts: torch.Tensor, noise: torch.Tensor) -> Tail:
        """``model``'s tails from ``starts`` with ``noise`` and their KL to θ₀."""
        return tail_with_kl(model, self.reference, starts, self.tail_t, noise)

    def segments(self, x: torch.Tensor, z: torch.Tensor, adversary: bool) -> torch.Tensor:
        """Tail samples ``x`` (model space) as segments in the forecaster's units, their
        demand scaled by the set's level factor of noise ``z`` (the adversary's or θ₀'s)."""
        u = self.to_forecaster_units(self.reference.from_model_space(x))
        factor = self.set.level_factor(z, adversary)
        if factor is None:
            return u
        real = self.data_scaler.inverse_transform(u) * factor[:, None]
        return self.data_scaler.transform(real)

    # ------------------------------------------------------------------ losses
    @torch.no_grad()
    def segment_losses(
        self, segments: torch.Tensor, forecaster: nn.Module, objective: str | None = None
    ) -> torch.Tensor:
        """Mean loss (default: the training objective) over every window of each segment."""
        was = forecaster.training
        forecaster.eval()
        losses = self.window_losses(segments, forecaster, objective=objective)
        forecaster.train(was)
        return losses

    def window_losses(
        self,
        segments: torch.Tensor,
        forecaster: nn.Module,
        generator: torch.Generator | None = None,
        objective: str | None = None,
    ) -> torch.Tensor:
        """Mean per-window loss on each segment ``[n]``, differentiable in the segments.

        With a ``generator``, a random subset of ``window_sample`` window positions (the
        same for every segment) gives an unbiased estimate of the mean at a fraction of
        the cost and memory; without one every window is priced.
        """
        cut = segments.unfold(1, self.window + self.lead + self.horizon, 1)  # [n, m, w + L + h]
        if generator is not None and cut.shape[1] > self.params.window_sample:
            pick = torch.randperm(cut.shape[1], generator=generator)[: self.params.window_sample]
            cut = cut[:, pick.to(cut.device)]
        x = cut[..., : self.window].reshape(-1, self.window)
        y = cut[..., self.window + self.lead :].reshape(-1, self.horizon)
        pred = forecaster(x)
        if objective is None:
            losses = self.losses(pred, y)
        else:
            losses = sample_losses(pred, y, self._task, self._scaler, objective)
        return losses.reshape(segments.shape[0], -1).mean(dim=1)

    # ------------------------------------------------------------------ adversary
    def maximise(self, forecaster: nn.Module, generator: torch.Generator) -> None:
        """Inner maximisation: move θ towards high-loss samples inside the ambiguity set."""
        if not self.params.adversary:
            return
        if self.restart:
            self.reset_adversary()
        was_training = forecaster.training
        forecaster.eval()
        frozen = [q for q in forecaster.parameters() if q.requires_grad]
        for q in frozen:
            q.requires_grad_(False)
        self.adversary.train()
        try:
            self.set.maximise(forecaster, generator)
        finally:
            for q in frozen:
                q.requires_grad_(True)
            forecaster.train(was_training)
            self.adversary.eval()

    # ------------------------------------------------------------------ hooks
    def epoch_windows(
        self, epoch: int, forecaster: nn.Module, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        self.record = {}
        start = time.perf_counter()
        self.maximise(forecaster, generator)
        self.adversary_s += time.perf_counter() - start
        # Fresh adversarial tails and θ₀'s tails from the same states with the same noise.
        starts, noise = self.draw_starts(p.adversarial_samples, generator)
        z = self.level_noise(len(starts), generator)
        with torch.no_grad():
            adv_tail = self.tail(self.adversary, starts, noise)
            ref_x, _ = run_tail(
                self.reference.eps, self.reference.schedule, starts, self.tail_t, noise
            )
            ref_segments = self.segments(ref_x, z, False)
            adv_segments = self.set.segments(self.segments(adv_tail.samples, z, True), generator)
        slots = self.reference.segment_length
        adv_losses = self.segment_losses(adv_segments, forecaster)
        if self.objective != "regret":  # with the regret objective they are the same numbers
            adv_losses_regret = self.segment_losses(adv_segments, forecaster, "regret")
        else:
            adv_losses_regret = adv_losses
        adv_regret = float(adv_losses_regret.mean())
        ref_regret = self.segment_losses(ref_segments, forecaster, "regret")
        adv_np, ref_np = adv_segments.cpu().numpy(), ref_segments.cpu().numpy()
        every = p.realism == "every"
        self.record.update(
            {
                "path_kl": float(adv_tail.kl.mean() + self.set.divergence().detach()) / slots,
                "adv_loss": float(adv_losses.mean()),
                "adv_regret": adv_regret,
                "ref_regret": float(ref_regret.mean()),
                "regret_raise": adv_regret / max(float(ref_regret.mean()), 1e-12),
                **self._realism(adv_np, discriminator=every),
                **self.set.record(slots),
            }
        )
        if every:
            self.record["ref_disc_acc"] = self._realism(ref_np)["disc_acc"]
        if p.keep_worst:
            self.worst = adv_np[np.argsort(-adv_losses.cpu().numpy())[: p.keep_worst]]
            order = np.argsort(-ref_regret.cpu().numpy())[: p.keep_worst]
            self.worst_reference = ref_np[order]
        windows = segments_to_windows(adv_np, self.window, self.horizon, lead=self.lead)
        x_adv, y_adv = windows.tensors(self._x.device)
        budget = self._x.shape[0]
        n_real = round(p.real_fraction * budget)
        pick_adv = torch.randint(0, x_adv.shape[0], (budget - n_real,), generator=generator)
        pick_real = torch.randperm(self._x.shape[0], generator=generator)[:n_real]
        x = torch.cat([x_adv[pick_adv], self._x[pick_real]])
        y = torch.cat([y_adv[pick_adv], self._y[pick_real]])
        return x, y

    def _realism(self, segments: np.ndarray, discriminator: bool = True) -> dict[str, float]:
        """Realism of segments (forecaster units) against the real training series; the
        crop discriminator only with ``discriminator``."""
        r = realism(
            segments,
            self.real_series,
            self.realism_generator,
            floor=self.floor,
            epochs=_REALISM_EPOCHS,
            discriminator=discriminator,
        )
        out = {"w1": r["w1"], "level_std": r["level_spread"], "floor_frac": r["at_floor"]}
        if discriminator:
            out["disc_acc"] = r["discriminator"]
        return out

    def final_record(self, forecaster: nn.Module) -> dict[str, float]:
        """With ``realism = "final"``: the discriminator's verdict on fresh adversarial
        tails and θ₀'s tails of the final adversary (its own generator: the training draws
        are untouched)."""
        if self.params.realism != "final":
            return {}
        with torch.no_grad():
            starts, noise = self.draw_starts(_REALISM_SEGMENTS, self.realism_generator)
            z = self.level_noise(len(starts), self.realism_generator)
            adv = self.segments(self.tail(self.adversary, starts, noise).samples, z, True)
            adv = self.set.segments(adv, self.realism_generator)
            ref_x, _ = run_tail(
                self.reference.eps, self.reference.schedule, starts, self.tail_t, noise
            )
            ref = self.segments(ref_x, z, False)
        return {
            "disc_acc": self._realism(adv.cpu().numpy())["disc_acc"],
            "ref_disc_acc": self._realism(ref.cpu().numpy())["disc_acc"],
        }

    @torch.no_grad()
    def selection_score(self, forecaster: nn.Module, validation: float | None) -> float | None:
        """With ``selection = "adversarial"``: the regret on the held-out pool states'
        tails under the current adversary (fixed noise), the robust model-selection
        criterion; else the validation regret."""
        if self.params.selection != "adversarial":
            return validation
        x, _ = run_tail(
            self.adversary.eps,
            self.adversary.schedule,
            self.held_starts,
            self.tail_t,
            self.held_noise,
        )
        segments = self.segments(x, self.held_level_noise, True)
        score = float(self.segment_losses(segments, forecaster, "regret").mean())
        self.record["selection_score"] = score
        return score

    def epoch_record(self) -> dict[str, float]:
        return dict(self.record)

    def artifacts(self) -> dict[str, Any]:
        slots = self.reference.segment_length
        out: dict[str, Any] = {
            "ambiguity": self.params.ambiguity,
            "segment_length": slots,
            "t_prime": self.t_prime,
            "tail_steps": int(self.tail_t.shape[0] - 1),
            "adversary_s": self.adversary_s,
            **self.set.artifacts(slots),
        }
        if self.worst is not None:
            out["worst_case"] = self.worst
        if self.worst_reference is not None:
            out["worst_case_reference"] = self.worst_reference
        return out

    @classmethod
    def flat_params(cls, params: Any) -> dict[str, Any]:
        return dict(params.flat())


def check_reference_series(model: DiffusionModel, real: np.ndarray) -> None:
    """Raise :class:`ConfigError` if ``model`` (θ₀) was fitted to another series than the
    training series ``real`` (real units): its scaler's range must be the series' range,
    and the series length the one it records."""
    scaler = model.scaler
    if scaler is None:
        return
    # The series' range as a scaler fitted to it holds it (a constant one spans lo..lo+1).
    expected = Scaler.fit(real)
    lo, hi = expected.lo, expected.hi
    span = max(hi - lo, 1e-12)
    if (
        abs(scaler.lo - lo) > _RANGE_TOLERANCE * span
        or abs(scaler.hi - hi) > _RANGE_TOLERANCE * span
    ):
        raise ConfigError(
            f"method_params.threed.diffusion: θ₀ was fitted to a series ranging "
            f"{scaler.lo:.6g}..{scaler.hi:.6g}, the training series ranges {lo:.6g}..{hi:.6g}; "
            "fit the reference model on this training series"
        )
    rows = model.meta.get("train_rows")
    if rows is not None and int(rows) != real.shape[0]:
        raise ConfigError(
            f"method_params.threed.diffusion: θ₀ was fitted to {rows} slots, the training "
            f"series has {real.shape[0]}"
        )


__all__ = ["ThreeDLearning", "ThreeDParams", "check_reference_series"]
