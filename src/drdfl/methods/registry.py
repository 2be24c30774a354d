"""The method registry: every fact about a training method in one place.

Config validation, the runner, the sweep and the report read this table and nothing else:
a method's name, its place in tables, its plot style, whether it starts from the
reference diffusion model θ₀, whether it is warm-started from DFL, its parameter model
(the pydantic class its constructor validates), the history columns it writes per epoch,
its variants (runs with some parameters changed, each with its own label) and the
parameter a budget sweep varies. Importing this module is cheap: the method classes load
on first use. Run labels are read back through these tables (:mod:`drdfl.methods.labels`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

#: Okabe & Ito (2008), "Color Universal Design": a colour-blind-safe palette
OKABE_ITO = {
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "black": "#000000",
    "grey": "#999999",
}
#: the label of DFL trained on part of each test set (an upper bound, not a method)
SKYLINE = "skyline"


@dataclass(frozen=True)
class Variant:
    """A run of a method with some of its parameters changed, told apart by its label
    (the method's name and ``suffix``) and added to a run by ``report.<switch>``."""

    name: str
    suffix: str
    params: dict[str, Any]
    switch: str
    summary: str
    hatch: str


@dataclass(frozen=True)
class MethodSpec:
    """One registered training method."""

    name: str
    #: ``module:Class`` of the :class:`~drdfl.methods.trainer.TrainedMethod` subclass
    target: str
    summary: str
    color: str
    hatch: str = ""
    #: starts from the reference diffusion model θ₀ (the runner fits and caches it)
    needs_reference: bool = False
    #: warm-started from the seed's DFL model when the run asks for warm starts
    warm_start: bool = True
    #: per-epoch history columns the method writes beyond the shared ones, with meanings
    history: dict[str, str] = field(default_factory=dict)
    #: an untrained rule (the baselines every trained method is measured against)
    untrained: bool = False
    #: in the profiles' method lists (a method that needs settings they lack is not)
    in_profiles: bool = True
    #: runs of the method with some parameters changed (ablations)
    variants: tuple[Variant, ...] = ()
    #: the parameter a budget sweep (``report.budget_sweep``) varies, if any
    sweep: str | None = None

    @property
    def cls(self) -> Any:
        """The :class:`~drdfl.methods.trainer.TrainedMethod` subclass (imported on first use)."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def params_model(self) -> type[BaseModel]:
        """The pydantic model of the method's hyperparameters."""
        return self.cls.Params

    def parse(self, params: dict[str, Any] | None = None) -> Any:
        """``params`` (a user's ``method_params.<name>``) validated by :attr:`params_model`;
        a :class:`~drdfl.errors.ConfigError` names the key."""
        from drdfl.schema import parse_model

        return parse_model(self.params_model, dict(params or {}), f"method_params.{self.name}")

    def build(
        self,
        train: Any = None,
        params: dict[str, Any] | None = None,
        checkpoint: Any = None,
        progress: bool = False,
    ) -> Any:
        """The method (a :class:`~drdfl.methods.trainer.TrainedMethod`) configured with the
        training settings ``train`` and ``params`` (validated by :attr:`params_model`)."""
        return self.cls(train=train, checkpoint=checkpoint, progress=progress, **(params or {}))


#: history columns every method writes (the shared training loop)
SHARED_HISTORY = {
    "epoch": "outer epoch",
    "train_loss": "mean training objective over the epoch's windows",
    "val_regret": "mean decision regret on the validation windows",
    "lr": "forecaster learning rate",
    "time_s": "wall time since the start of training",
}

_DRO_DUAL = "dual variable of the DRO objective at the epoch's end"

_ALPHA = "smoothing constant α of the rule (chosen by training regret unless given)"

REGISTRY: tuple[MethodSpec, ...] = (
    MethodSpec(
        "naive-last",
        "drdfl.methods.naive:NaiveLast",
        "untrained: persistence, the window's last value",
        OKABE_ITO["grey"],
        hatch="..",
        warm_start=False,
        untrained=True,
    ),
    MethodSpec(
        "naive-mean",
        "drdfl.methods.naive:NaiveMean",
        "untrained: the window's mean",
        OKABE_ITO["grey"],
        hatch="xx",
        warm_start=False,
        untrained=True,
    ),
    MethodSpec(
        "naive-ets",
        "drdfl.methods.naive:NaiveETS",
        "untrained: simple exponential smoothing over the window",
        OKABE_ITO["grey"],
        hatch="\\\\",
        warm_start=False,
        untrained=True,
        history={"alpha": _ALPHA},
    ),
    MethodSpec(
        "naive-scaled",
        "drdfl.methods.naive:NaiveScaled",
        "untrained: the best of last, mean and ETS times its decision-optimal multiple",
        OKABE_ITO["grey"],
        hatch="//",
        warm_start=False,
        untrained=True,
        history={"alpha": _ALPHA, "scale": "multiple of demand fitted on training decisions"},
    ),
    MethodSpec(
        "naive-seasonal",
        "drdfl.methods.naive:NaiveSeasonal",
        "untrained: the value one period (default one day) earlier; needs windows that long",
        OKABE_ITO["grey"],
        hatch="++",
        warm_start=False,
        untrained=True,
        in_profiles=False,
    ),
    MethodSpec(
        "mse",
        "drdfl.methods.pto:MSEMethod",
        "predict-then-optimise: squared error, decide afterwards",
        OKABE_ITO["grey"],
        warm_start=False,
    ),
    MethodSpec(
        "dfl",
        "drdfl.methods.pto:DFLMethod",
        "decision-focused learning on the real windows",
        OKABE_ITO["blue"],
        warm_start=False,
    ),
    MethodSpec(
        "revin-dfl",
        "drdfl.methods.revin:RevINDFLMethod",
        "DFL with the forecaster behind reversible instance normalization (RevIN)",
        OKABE_ITO["blue"],
        hatch="//",
        # a DFL model's weights mean something else once each window is standardized
        warm_start=False,
    ),
    MethodSpec(
        "threed",
        "drdfl.methods.threed:ThreeDLearning",
        "3D-Learning: DFL against the worst case inside a diffusion model",
        OKABE_ITO["vermillion"],
        needs_reference=True,
        variants=(
            Variant(
                "mse",
                "-mse",
                {"objective": "mse"},
                "mse_ablation",
                "3D-Learning trained on squared error (the paper's Fig. 3 ablation)",
                "//",
            ),
            Variant(
                "off",
                "-off",
                {"adversary": False},
                "adversary_ablation",
                "3D-Learning with its adversary off: the same θ₀ tails and real-window mix",
                "\\\\",
            ),
        ),
        sweep="budget",
        history={
            "path_kl": "KL of the epoch's adversarial tails (and level factors) to θ₀'s, nats "
            "per segment slot",
            "kl_budget": "path-KL budget, nats per segment slot (pathkl ambiguity set)",
            "adv_loss": "forecaster loss on the adversary's segments",
            "adv_regret": "forecaster regret on the adversary's segments",
            "ref_regret": "forecaster regret on θ₀'s tails from the same states and noise",
            "regret_raise": "adv_regret / ref_regret (common random numbers)",
            "disc_acc": "crop discriminator accuracy, adversarial vs real segments (0.5: alike)",
            "ref_disc_acc": "crop discriminator accuracy, θ₀'s tails vs real segments",
            "w1": "Wasserstein-1 distance of adversarial and real values (normalized units)",
            "level_std": "std of the adversarial segments' means (normalized units)",
            "floor_frac": "share of adversarial values at the zero-demand floor",
            "selection_score": "regret on held-out adversarial tails (adversarial selection)",
            "level_shift": "mean log-level shift of the structured level direction",
            "alpha": "dual variable α of the J budget (paper ambiguity set)",
            "J": "score-matching loss J(θ) on real segments at t ≤ T′ (paper ambiguity set)",
            "J_excess": "J(θ) − J(θ₀) (paper ambiguity set)",
            "clip_frac": "share of clipped likelihood ratios (paper set, ratio estimator)",
        },
    ),
    MethodSpec(
        "wdro",
        "drdfl.methods.wdro:WDROMethod",
        "Wasserstein DRO: Frank–Wolfe ℓ2 attacks on input windows",
        OKABE_ITO["sky"],
        history={
            "attack_loss_clean": "attack loss before the attack",
            "attack_loss_adv": "attack loss after the attack",
        },
    ),
    MethodSpec(
        "kldro",
        "drdfl.methods.dro:KLDROMethod",
        "KL-divergence DRO of the per-window decision loss",
        OKABE_ITO["green"],
        history={"lambda": _DRO_DUAL},
    ),
    MethodSpec(
        "cvar",
        "drdfl.methods.dro:CVaRMethod",
        "CVaR of the per-window decision loss",
        OKABE_ITO["purple"],
        history={"eta": _DRO_DUAL},
    ),
    MethodSpec(
        "chi2",
        "drdfl.methods.dro:Chi2DROMethod",
        "χ²-divergence DRO of the per-window decision loss",
        OKABE_ITO["yellow"],
        history={"eta": _DRO_DUAL},
    ),
    MethodSpec(
        "augment-gaussian",
        "drdfl.methods.augment:GaussianAugmentMethod",
        "DFL with Gaussian-noise copies of the training series",
        OKABE_ITO["orange"],
    ),
    MethodSpec(
        "augment-perlin",
        "drdfl.methods.augment:PerlinAugmentMethod",
        "DFL with Perlin-noise copies of the training series",
        OKABE_ITO["orange"],
        hatch="//",
    ),
    MethodSpec(
        "augment-cutout",
        "drdfl.methods.augment:CutoutAugmentMethod",
        "DFL with cutout copies of the training series",
        OKABE_ITO["orange"],
        hatch="..",
    ),
    MethodSpec(
        "augment-level",
        "drdfl.methods.augment:LevelAugmentMethod",
        "DFL on windows with their demand level scaled by a log-uniform factor",
        OKABE_ITO["orange"],
        hatch="\\\\",
    ),
    MethodSpec(
        "augment-burst",
        "drdfl.methods.augment:BurstAugmentMethod",
        "DFL on windows with their deviations from a moving mean scaled",
        OKABE_ITO["orange"],
        hatch="xx",
    ),
    MethodSpec(
        "diffusion-augment",
        "drdfl.methods.augment:DiffusionAugmentMethod",
        "DFL on real windows mixed with θ₀'s samples (3D-Learning without the adversary)",
        OKABE_ITO["black"],
        needs_reference=True,
        history={"generated_pool": "generated windows available this epoch"},
    ),
)

METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in REGISTRY}
#: every registered method, in report order
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
#: the untrained baselines, in report order
UNTRAINED: tuple[str, ...] = tuple(s.name for s in REGISTRY if s.untrained)


def get_spec(name: str) -> MethodSpec:
    """The registry entry of ``name``; a :class:`ConfigError` lists the valid names."""
    from drdfl.errors import ConfigError

    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(
            f"unknown method {name!r}; valid methods: {', '.join(METHOD_NAMES)}"
        ) from None


__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "OKABE_ITO",
    "REGISTRY",
    "SHARED_HISTORY",
    "SKYLINE",
    "UNTRAINED",
    "MethodSpec",
    "Variant",
    "get_spec",
]
