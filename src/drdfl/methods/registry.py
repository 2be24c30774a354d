"""The method registry: every fact about a training method in one place.

Config validation, the runner, the sweep and the report read this table and nothing else:
a method's name, its place in tables, its plot style, whether it starts from the
reference diffusion model θ₀, whether it is warm-started from DFL, its parameter model
(the pydantic class its constructor validates) and the history columns it writes per
epoch. Importing this module is cheap: the method classes load on first use.

Run *labels* name a method or a variant of one: ``threed-mse`` (3D-Learning trained on
MSE, the paper's Fig. 3 ablation), ``threed@0.03`` (a budget-sweep point), ``skyline``
(DFL trained on part of a test set). :func:`spec_for_label` maps any label to the entry
it belongs to and :func:`label_style` to its plot style.
"""

from __future__ import annotations

import importlib
import re
import zlib
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
# Paul Tol's "muted" scheme, for labels the registry does not name.
_FALLBACK = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677")
_LINESTYLE = {"": "-", "//": "--", "..": ":", "xx": "-.", "\\\\": (0, (3, 1, 1, 1))}
_MARKERS = "osD^vP<>Xph*"

#: the label of DFL trained on part of each test set (an upper bound, not a method)
SKYLINE = "skyline"
#: suffix of the MSE-objective ablation of a method (``threed-mse``)
MSE_SUFFIX = "-mse"
#: suffix of 3D-Learning's run with its adversary off (``threed-off``)
OFF_SUFFIX = "-off"
#: suffix of a run scored with online recalibration (``dfl+online``)
ONLINE_SUFFIX = "+online"
_SWEEP = re.compile(r"^(?P<method>[a-z0-9-]+)@(?P<budget>[0-9.eE+-]+)$")


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

    @property
    def cls(self) -> Any:
        """The :class:`~drdfl.methods.trainer.TrainedMethod` subclass (imported on first use)."""
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def params_model(self) -> type[BaseModel]:
        """The pydantic model of the method's hyperparameters."""
        return self.cls.Params

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


def off_label(label: str) -> str:
    """The label of ``label``'s run with its adversary off."""
    return label + OFF_SUFFIX


def online_label(label: str) -> str:
    """The label of ``label``'s run scored with online recalibration."""
    return label + ONLINE_SUFFIX


def parse_label(label: str) -> tuple[str, str]:
    """``(method, variant)`` of a run label: ``("threed", "mse")`` for ``threed-mse``,
    ``("threed", "@0.03")`` for a budget-sweep point, ``("dfl", "online")`` for
    ``dfl+online`` (``"mse+online"`` for ``threed-mse+online``), ``("threed", "off")``
    for ``threed-off`` (the adversary switched off), ``("skyline", "")``,
    ``(m, "")``."""
    if label in METHODS or label == SKYLINE:
        return label, ""
    if label.endswith(ONLINE_SUFFIX):
        method, variant = parse_label(label[: -len(ONLINE_SUFFIX)])
        return method, (variant + "+" if variant else "") + "online"
    sweep = _SWEEP.match(label)
    if sweep and sweep["method"] in METHODS:
        return sweep["method"], "@" + sweep["budget"]
    if label.endswith(MSE_SUFFIX) and label[: -len(MSE_SUFFIX)] in METHODS:
        return label[: -len(MSE_SUFFIX)], "mse"
    if label.endswith(OFF_SUFFIX) and label[: -len(OFF_SUFFIX)] in METHODS:
        return label[: -len(OFF_SUFFIX)], "off"
    return label, ""


def sweep_budget(label: str) -> float | None:
    """The budget ε of a budget-sweep label ``method@ε``; ``None`` for any other label."""
    sweep = _SWEEP.match(label)
    if sweep is None or sweep["method"] not in METHODS:
        return None
    try:
        return float(sweep["budget"])
    except ValueError:
        return None


def label_order(label: str) -> tuple[int, int, float, str]:
    """Sort key of run labels: registry order, a method's variants after it, labels the
    registry does not know next, the skyline last."""
    method, variant = parse_label(label)
    if method == SKYLINE:
        return (2, 0, 0.0, label)
    if method not in METHODS:
        return (1, 0, 0.0, label)
    rank = METHOD_NAMES.index(method)
    if not variant:
        return (0, rank, -2.0, label)
    if variant == "online":
        return (0, rank, -1.5, label)
    if variant.startswith("mse"):
        return (0, rank, -1.0 + 0.1 * variant.endswith("online"), label)
    if variant.startswith("off"):
        return (0, rank, -0.5 + 0.1 * variant.endswith("online"), label)
    if variant.startswith("@"):
        return (0, rank, float(variant[1:].removesuffix("+online")), label)
    return (0, rank, 0.0, label)


def label_style(label: str) -> dict[str, Any]:
    """Colour, hatch, line style and marker of a run label, the same in every figure."""
    method, variant = parse_label(label)
    if method == SKYLINE:
        color, hatch, index = "#FFFFFF", "xx", len(METHOD_NAMES)
    elif method in METHODS:
        spec = METHODS[method]
        index = METHOD_NAMES.index(method)
        color = spec.color
        hatch = {"": spec.hatch, "mse": "//", "off": "\\\\", "online": ".."}.get(variant, "xx")
    else:
        index = zlib.crc32(label.encode())
        color, hatch = _FALLBACK[index % len(_FALLBACK)], ""
    return {
        "color": color,
        "hatch": hatch,
        "linestyle": _LINESTYLE.get(hatch, "-"),
        "marker": _MARKERS[index % len(_MARKERS)],
    }


def history_columns(label: str) -> dict[str, str]:
    """The method-specific history columns a run label's method writes."""
    method, _ = parse_label(label)
    return dict(METHODS[method].history) if method in METHODS else {}


__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "OFF_SUFFIX",
    "OKABE_ITO",
    "ONLINE_SUFFIX",
    "REGISTRY",
    "SHARED_HISTORY",
    "SKYLINE",
    "UNTRAINED",
    "MethodSpec",
    "get_spec",
    "history_columns",
    "label_order",
    "label_style",
    "off_label",
    "online_label",
    "parse_label",
    "sweep_budget",
]
