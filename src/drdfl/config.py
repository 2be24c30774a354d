"""Typed configuration: validated pydantic models with helpful errors.

Every setting lives in a model here; unknown keys, wrong types and out-of-range values
are rejected with the key's dotted path and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drdfl.errors import ConfigError


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainConfig(StrictModel):
    """How a forecaster is optimised; shared by every method so comparisons are fair."""

    epochs: int = Field(30, ge=1, description="passes over the training distribution")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0)
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    step_size: int = Field(10, ge=1, description="epochs per decay with scheduler='step'")
    gamma: float = Field(0.5, gt=0, le=1, description="decay factor with scheduler='step'")
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm (None: off)")
    patience: int | None = Field(
        8, ge=1, description="early stopping: epochs without validation improvement"
    )
    objective: Literal["regret", "decision", "mse"] = Field(
        "regret", description="per-sample loss: decision regret, raw decision loss, or MSE"
    )
    max_val_windows: int = Field(20000, ge=1, description="validation windows scored per epoch")
    seed: int = 0
    device: str = "cpu"


def validation_message(exc: ValidationError, root: str = "") -> str:
    """One readable line per problem: ``path.to.key: what is wrong (got …)``."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in (root, *err["loc"]) if p != "")
        got = err.get("input")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{path or '<root>'}: {msg} (got {got!r})")
    return "; ".join(lines)


def parse_model(model: type[StrictModel], data: dict, root: str = "") -> StrictModel:
    """Validate ``data`` into ``model``; raise :class:`ConfigError` naming the key paths."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, root)) from None


class DataConfig(StrictModel):
    """Which data, and how it is cut into windows."""

    suite: Literal["synthetic", "paper", "honest"] = Field(
        "synthetic",
        description="training data and test sets: built-in synthetic shift, the paper's "
        "protocol, or the leak-free chronological protocol",
    )
    data_dir: str | None = Field(None, description="directory of real traces (else DRDFL_DATA_DIR)")
    synthetic_days: float = Field(2.0, gt=0, le=60, description="days of synthetic workload")
    interval: str = "5s"
    tokens: Literal["context", "generated", "total"] = "context"
    window: int = Field(7, ge=1, le=512)
    horizon: int = Field(1, ge=1, le=64)
    test_max_rows: int = Field(100_000, ge=100, description="test series are truncated to this")
    extra_tests: list[str] = Field(
        default_factory=list, description="extra OOD test sets: dataset names or files"
    )


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


class ReportConfig(StrictModel):
    """What the report shows beyond the main table."""

    budget_sweep: bool = False
    budgets: list[float] = Field(default_factory=lambda: [0.01, 0.02, 0.025, 0.03, 0.035, 0.04])
    mse_ablation: bool = True


class ExperimentConfig(StrictModel):
    """One experiment: data → diffusion → methods × seeds → evaluation → report."""

    name: str = "quick"
    seeds: list[int] = Field(default_factory=lambda: [0, 1], min_length=1)
    methods: list[str] = Field(default_factory=lambda: ["mse", "dfl"], min_length=1)
    task: str = "provisioning:paper-code"
    forecaster: str = "lstm"
    device: str = "cpu"
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads (None: torch's default)"
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


#: Every method of the comparison, in report order.
ALL_METHODS = [
    "mse",
    "dfl",
    "threed",
    "wdro",
    "kldro",
    "cvar",
    "chi2",
    "augment-gaussian",
    "augment-perlin",
    "augment-cutout",
    "diffusion-augment",
]

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
            "threed": {
                "pool": 64,
                "trajectories": 32,
                "adversarial_samples": 32,
                "inner_epochs": 3,
            },
            "diffusion-augment": {"samples": 32},
            "wdro": {"steps": 5},
        },
        "evaluation": {"corruption_severities": [2.0], "bootstrap": 200},
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
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        value = _parse_value(text.strip())
        if parts[-1] in ("seeds", "methods") and not isinstance(value, list):
            value = [value]
        node[parts[-1]] = value
    return out


def resolve_config(
    profile: str | None = None,
    path: str | Path | None = None,
    overrides: list[str] | None = None,
) -> ExperimentConfig:
    """Defaults ← profile ← TOML file ← ``--set`` overrides, validated.

    A TOML file may name its base profile with a top-level ``profile = "…"`` key.
    """
    import tomllib

    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    name = profile or raw.pop("profile", None) or "quick"
    raw.pop("profile", None)
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    merged = apply_overrides(_merge(PROFILES[name], raw), overrides or [])
    cfg = parse_model(ExperimentConfig, merged)
    assert isinstance(cfg, ExperimentConfig)
    unknown = [m for m in cfg.methods if m not in ALL_METHODS]
    if unknown:
        raise ConfigError(f"methods: unknown {unknown}; valid methods: {', '.join(ALL_METHODS)}")
    return cfg


def load_config(path: str | Path) -> ExperimentConfig:
    """The experiment config in the TOML file ``path`` (over its base profile)."""
    return resolve_config(path=path)


def config_to_toml(cfg: ExperimentConfig) -> str:
    """The fully resolved config as TOML (``None`` values omitted)."""
    import tomli_w

    def drop_none(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: drop_none(v) for k, v in obj.items() if v is not None}
        if isinstance(obj, list):
            return [drop_none(v) for v in obj]
        return obj

    return tomli_w.dumps(drop_none(cfg.model_dump(mode="json")))
