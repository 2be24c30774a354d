"""Typed configuration: validated pydantic models with helpful errors.

Every setting lives in a model here; unknown keys, wrong types and out-of-range values
are rejected with the key's dotted path and what is allowed. A resolved configuration
written by :func:`config_to_toml` names its profile and spells every ``None`` as
``"none"``, so loading it rebuilds exactly that configuration. A sweep's grid is a
configuration concern too: :func:`expand_grid` turns a grid into one config per point.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from drdfl.errors import ConfigError
from drdfl.methods.registry import METHOD_NAMES, METHODS
from drdfl.methods.settings import TrainConfig
from drdfl.schema import NONE, Seed, StrictModel, parse_model


class DataConfig(StrictModel):
    """Which data, and how it is cut into windows."""

    suite: Literal["synthetic", "paper", "honest"] = Field(
        "synthetic",
        description="training data and test sets: built-in synthetic shift, the paper's "
        "protocol, or the leak-free chronological protocol",
    )
    data_dir: str | None = Field(None, description="directory of real traces (else DRDFL_DATA_DIR)")
    synthetic_days: float = Field(2.0, gt=0, le=60, description="days of synthetic workload")
    interval: str = Field(
        "5s", description="bin width of the synthetic suite (the real suites' files fix theirs)"
    )
    tokens: Literal["context", "generated", "total"] = Field(
        "context", description="tokens counted when binning per-request --test files"
    )
    window: int = Field(7, ge=1, le=512)
    horizon: int = Field(1, ge=1, le=64)
    lead: int = Field(
        0,
        ge=0,
        le=4096,
        description="slots between the decision and the first slot it is for: deciding at "
        "slot t (having seen up to t-1) for slots t+lead … t+lead+horizon-1, e.g. the "
        "minutes a new replica takes to start",
    )
    test_max_rows: int = Field(100_000, ge=100, description="test series are truncated to this")
    extra_tests: list[str] = Field(
        default_factory=list, description="extra OOD test sets: dataset names or files"
    )

    @model_validator(mode="after")
    def _keys_of_the_suite(self) -> DataConfig:
        # The real suites read files binned at their own interval: these keys would be
        # silently ignored there.
        if self.suite != "synthetic":
            defaults = DataConfig.model_fields
            if self.interval != defaults["interval"].default:
                raise ValueError(
                    f"interval applies only to the synthetic suite (the {self.suite} "
                    "suite's files fix the interval); remove it"
                )
            if self.tokens != defaults["tokens"].default and not self.extra_tests:
                raise ValueError(
                    f"tokens applies only to the synthetic suite and to --test files; "
                    f"the {self.suite} suite's files are already binned; remove it"
                )
        return self


class DiffusionConfig(StrictModel):
    """The reference diffusion model fitted to the training series."""

    preset: Literal["paper", "paper-2d", "fast", "tiny"] = "fast"
    iterations: int | None = Field(None, ge=1, description="None: the preset's")


class EvaluationConfig(StrictModel):
    """How forecasters are judged."""

    corruptions: bool = True
    corruption_severities: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0])
    cvar_alpha: float = Field(0.9, ge=0, lt=1)
    bootstrap: int = Field(500, ge=10)
    skyline: bool = True
    online: bool = Field(
        False,
        description="also score every method with online recalibration: the test set walked "
        "in time order, each decision corrected by what the slots already observed cost "
        "(rows `<method>+online`)",
    )
    online_halflife: float = Field(
        256.0, gt=1, description="windows after which an observed regret counts half online"
    )
    online_rules: list[Literal["last", "mean"]] = Field(
        default_factory=list,
        description="rules the online experts may blend in besides the method's anchor rule "
        "(persistence for a plain forecaster)",
    )
    backtest: bool = Field(
        False,
        description="replay the in-distribution test series as a planner runs: the first "
        "seed's models (and their online recalibration) against the autoscaler rules, in "
        "replicas (OUT/backtest, a report section)",
    )
    backtest_slo_target: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="share of slots a policy may leave short of capacity when the backtest "
        "compares policies at a matched SLO",
    )


class ReportConfig(StrictModel):
    """What the report shows beyond the main table."""

    budget_sweep: bool = False
    budgets: list[float] = Field(
        default_factory=lambda: [0.01, 0.02, 0.05, 0.1, 0.2],
        description="threed budgets of the budget sweep, in its ambiguity set's units "
        "(nats per segment slot for the default path-KL set)",
    )
    mse_ablation: bool = True
    adversary_ablation: bool = Field(
        True,
        description="also run 3D-Learning with its adversary off (`threed-off`: the same θ₀ "
        "tails and real-window mix, no adversary step), the ablation its gain is judged by",
    )


class ExperimentConfig(StrictModel):
    """One experiment: data → diffusion → methods × seeds → evaluation → report."""

    name: str = "quick"
    profile: str | None = Field(None, description="the named profile this config is laid over")
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1], min_length=1)
    methods: list[str] = Field(default_factory=lambda: ["mse", "dfl"], min_length=1)
    task: str = Field(
        "provisioning:paper-code",
        description="decision task[:preset]: provisioning (capacity in tokens per interval) "
        "or replicas (whole GPU replicas per slot)",
    )
    task_params: dict[str, float] = Field(
        default_factory=dict,
        description="the task's own constants over its preset's, e.g. max_replicas or "
        "tokens_per_s_per_replica for replicas",
    )
    forecaster: str = "lstm"
    anchor: Literal["none", "last", "mean", "ets"] = Field(
        "none",
        description="the rule every trained forecaster corrects (none: a plain network); "
        "untrained, an anchored forecaster forecasts exactly its rule",
    )
    anchor_alpha: float | None = Field(
        None,
        gt=0,
        le=1,
        description="smoothing constant of the ets anchor (None: chosen by training regret)",
    )
    device: str = "cpu"
    threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads (None: torch's default; 1 per unit "
        "when units run side by side)",
    )
    jobs: int | None = Field(
        None, ge=1, description="units run side by side (None: the available cores)"
    )
    warm_start_from_dfl: bool = True
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    method_params: dict[str, dict[str, object]] = Field(
        default_factory=dict, description="per-method constructor arguments, by method name"
    )
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"seed(s) {repeated} given more than once")
        return seeds

    @field_validator("methods")
    @classmethod
    def _distinct_methods(cls, methods: list[str]) -> list[str]:
        repeated = list(dict.fromkeys(m for m in methods if methods.count(m) > 1))
        if repeated:
            raise ValueError(f"method(s) {', '.join(repeated)} given more than once")
        return methods


#: Every method of the comparison, in report order (those the profiles can run).
ALL_METHODS = [m for m in METHOD_NAMES if METHODS[m].in_profiles]

#: Named profiles: partial configs layered over the defaults.
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "name": "quick",
        "seeds": [0, 1],
        "threads": 1,
        "methods": ALL_METHODS,
        "forecaster": "mlp",
        "data": {"suite": "synthetic", "synthetic_days": 1.0},
        "train": {"epochs": 4, "batch_size": 256, "lr": 3e-3, "patience": 3},
        "diffusion": {"preset": "tiny"},
        "method_params": {
            "threed": {"pool": 64, "adversarial_samples": 32},
            "diffusion-augment": {"samples": 32},
            "wdro": {"steps": 5},
        },
        "evaluation": {"corruption_severities": [2.0], "bootstrap": 200, "online": True},
    },
    "paper": {
        "name": "paper",
        "seeds": [0, 1, 2],
        "threads": 1,
        "methods": ALL_METHODS,
        "forecaster": "lstm",
        "data": {"suite": "paper"},
        "train": {"epochs": 30, "batch_size": 64, "lr": 1e-3, "patience": 6},
        "diffusion": {"preset": "paper"},
        # ε = 2 reaches the corner of the box in one Frank-Wolfe step: 3 steps give the
        # paper's 15-step attack loss within 1 % at a fifth of the cost (see the README).
        "method_params": {"wdro": {"steps": 3}},
        "evaluation": {"online": True},
    },
    "honest": {
        "name": "honest",
        "seeds": [0, 1, 2],
        "threads": 1,
        "methods": ALL_METHODS,
        "forecaster": "lstm",
        "data": {"suite": "honest"},
        "train": {"epochs": 20, "batch_size": 256, "lr": 1e-3, "patience": 5},
        "diffusion": {"preset": "fast"},
        "evaluation": {"online": True},
    },
}


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax if it parses (numbers, booleans, lists), else a string;
    a bare comma-separated list becomes a list."""
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if "," in text:
        return [_parse_value(part.strip()) for part in text.split(",") if part.strip()]
    return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to a raw config dict."""
    out = dict(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        parts = key.strip().split(".")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is not None and not isinstance(child, dict):
                # Replacing it by a table would drop every other key of that section.
                section = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"--set {key.strip()}: {section} is {child!r}, not a table of keys; "
                    f"fix {section} in the config file"
                )
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        value = _parse_value(text.strip())
        if parts[-1] in ("seeds", "methods") and not isinstance(value, list):
            value = [value]
        node[parts[-1]] = value
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a one-line :class:`ConfigError` for anything else."""
    import tomllib

    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected a TOML config)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None


def resolve_config(
    profile: str | None = None,
    path: str | Path | None = None,
    overrides: list[str] | None = None,
) -> ExperimentConfig:
    """Defaults ← profile ← TOML file ← ``--set`` overrides, validated.

    A TOML file may name its base profile with a top-level ``profile = "…"`` key
    (``"none"``: the plain defaults). A file that sets every top-level key (a resolved
    config without a profile) is taken as it is; any other file is laid over ``quick``.
    """
    raw = _read_toml(Path(path)) if path is not None else {}
    named = raw.pop("profile", None)
    if profile is not None and named is not None and named != profile:
        raise ConfigError(
            f"--profile {profile} and {path}'s profile = {named!r} differ; drop one of them"
        )
    name = profile or named
    complete = set(ExperimentConfig.model_fields) - {"profile"} <= set(raw)
    if name is None and not complete:
        name = "quick"
    if name == NONE:
        name = None
    if name is not None and name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    merged = apply_overrides(_merge(PROFILES[name] if name else {}, raw), overrides or [])
    merged["profile"] = name
    cfg = parse_model(ExperimentConfig, merged)
    assert isinstance(cfg, ExperimentConfig)
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"methods: unknown {unknown}; valid methods: {', '.join(ALL_METHODS)}")
    cfg.method_params = validate_method_params(cfg.method_params)
    check_windows(cfg)
    check_task(cfg)
    check_forecaster(cfg)
    return cfg


def check_forecaster(cfg: ExperimentConfig) -> None:
    """The forecaster builds for the data's windows: an unknown one is one
    :class:`ConfigError` naming the key before any work."""
    from drdfl.models.forecasters import build_forecaster

    try:
        build_forecaster(cfg.forecaster, cfg.data.window, cfg.data.horizon)
    except ConfigError as exc:
        raise ConfigError(f"forecaster: {exc}") from None


def check_task(cfg: ExperimentConfig) -> None:
    """The task and its parameters build: an unknown task, preset or parameter is one
    :class:`ConfigError` naming the key before any work."""
    from drdfl.tasks import get_task

    try:
        get_task(cfg.task, **cfg.task_params)
    except ConfigError as exc:
        key = "task_params" if cfg.task_params and "parameter" in str(exc) else "task"
        raise ConfigError(f"{key}: {exc}") from None
    if cfg.evaluation.backtest and cfg.data.suite == "paper":
        raise ConfigError(
            "evaluation.backtest: the paper suite's windows are normalized by each file's own "
            "extremes, which a planner replaying demand cannot know; use the synthetic or "
            "honest suite"
        )


def check_windows(cfg: ExperimentConfig) -> None:
    """Every configured method and the anchor can run on the data's windows: a rule that
    needs more slots than ``data.window`` is one :class:`ConfigError` before any work."""
    from drdfl.data.binning import parse_interval
    from drdfl.models.naive import check_window

    data = cfg.data
    interval_s = parse_interval(data.interval) if data.suite == "synthetic" else 5.0
    lead = data.lead
    if cfg.anchor != "none":
        check_window(cfg.anchor, data.window, "anchor")
    for name in dict.fromkeys(cfg.methods):
        spec = METHODS[name]
        params = parse_model(
            spec.params_model, dict(cfg.method_params.get(name, {})), f"method_params.{name}"
        )
        spec.cls.check_data(params, data.window, data.horizon, lead, interval_s)


def validate_method_params(
    method_params: dict[str, dict[str, object]],
) -> dict[str, dict[str, object]]:
    """Check every method's parameters against its registered parameter model, so that a
    misspelt method or key fails before any training; returns the validated values of
    the keys given (``"none"`` read as ``None``)."""
    out: dict[str, dict[str, object]] = {}
    for name, params in method_params.items():
        if name not in METHODS:
            raise ConfigError(
                f"method_params.{name}: unknown method; valid methods: {', '.join(ALL_METHODS)}"
            )
        spec = METHODS[name]
        model = parse_model(spec.params_model, dict(params), f"method_params.{name}")
        flat = spec.cls.flat_params(model)
        out[name] = {key: flat[key] for key in params}
    return out


def load_config(path: str | Path) -> ExperimentConfig:
    """The experiment config in the TOML file ``path`` (over its base profile)."""
    return resolve_config(path=path)


def config_to_toml(cfg: ExperimentConfig) -> str:
    """The fully resolved config as TOML, with its profile and every ``None`` as ``"none"``:
    :func:`load_config` on it rebuilds ``cfg`` exactly."""
    import tomli_w

    def spell_none(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: spell_none(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [spell_none(v) for v in obj]
        return NONE if obj is None else obj

    return tomli_w.dumps(spell_none(cfg.model_dump(mode="json")))


# ----------------------------------------------------------------------------- grid

#: Keys that already span the units of every point: a grid over them is refused.
NOT_GRIDDED = ("seeds", "methods")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


@dataclass(frozen=True)
class Point:
    """One combination of grid values and the config it gives (``id`` names its folder)."""

    id: str
    label: str
    values: dict[str, Any]
    cfg: ExperimentConfig


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``--grid key.path=v1,v2,…`` options as ``{key: [values]}`` (values parsed like
    ``--set``'s)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"--grid {item!r}: expected key.path=value1,value2,…")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice; list all its values in one --grid")
        node: Any = apply_overrides({}, [f"{key}={text.strip()}"])
        for part in key.split("."):
            node = node[part]
        grid[key] = node if isinstance(node, list) else [node]
    return grid


def format_value(value: Any) -> str:
    """A grid value as it appears in a point's label."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its shortest suffix that no other key ends with."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(o == suffix or o.endswith("." + suffix) for o in keys if o != key):
                break
        short[key] = suffix
    return short


def _set_path(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"--grid {key}: {'.'.join(parts[: depth + 1])} is a value, not a section"
            )
        node = child
    node[parts[-1]] = value


def expand_grid(cfg: ExperimentConfig, grid: dict[str, list[Any]]) -> list[Point]:
    """Every point of ``grid`` over ``cfg`` (the cartesian product, in the order given),
    each validated; no grid gives the single point of ``cfg`` itself."""
    if not grid:
        return [Point("", "", {}, cfg)]
    for key, values in grid.items():
        if key in NOT_GRIDDED:
            raise ConfigError(
                f"--grid {key}: every point already runs all {key}; set them with --set {key}=…"
            )
        if not values:
            raise ConfigError(f"--grid {key}: no values")
        shown = [format_value(v) for v in values]
        if len(set(shown)) < len(shown):
            raise ConfigError(f"--grid {key}: a value is repeated ({', '.join(shown)})")
    keys = list(grid)
    short = _short_keys(keys)
    base = cfg.model_dump(mode="json")
    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        data = copy.deepcopy(base)
        for key, value in zip(keys, combo, strict=True):
            _set_path(data, key, value)
        label = ",".join(f"{short[k]}={format_value(v)}" for k, v in zip(keys, combo, strict=True))
        try:
            point_cfg = parse_model(ExperimentConfig, data)
            assert isinstance(point_cfg, ExperimentConfig)
            point_cfg.method_params = validate_method_params(point_cfg.method_params)
            check_windows(point_cfg)
        except ConfigError as exc:
            raise ConfigError(f"grid point {label}: {exc}") from None
        values = dict(zip(keys, combo, strict=True))
        points.append(Point(_UNSAFE.sub("_", label), label, values, point_cfg))
    ids = [p.id for p in points]
    if len(set(ids)) < len(ids):
        raise ConfigError(
            f"--grid: values that differ only in characters unsafe in a folder name ({ids})"
        )
    return points
