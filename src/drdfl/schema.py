"""The base of every validated settings model (strict keys, ``"none"`` as ``None``, errors
that name the key's dotted path) and the range of a seed; a leaf module: every layer may
use it."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drdfl.errors import ConfigError

#: how ``None`` is written in TOML (which has no null) and in ``--set key=none``
NONE = "none"
#: the largest seed: every generator drdfl seeds (numpy's legacy one included) takes it
MAX_SEED = 2**32 - 1
#: a seed of every random choice
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


def _allows_none(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return (origin is typing.Union or origin is types.UnionType) and type(None) in typing.get_args(
        annotation
    )


def _accepts_text(annotation: Any, text: str) -> bool:
    """Whether ``text`` is one of ``annotation``'s literal values (``scheduler = "none"``)."""
    if typing.get_origin(annotation) is Literal:
        return text in typing.get_args(annotation)
    return any(_accepts_text(a, text) for a in typing.get_args(annotation))


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, assignments are validated, and
    ``"none"`` means ``None`` for a key that may be ``None`` (unless ``"none"`` is one of
    its named choices)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _none_from_text(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, value in data.items():
            field = cls.model_fields.get(key)
            if (
                field is not None
                and isinstance(value, str)
                and value.lower() == NONE
                and _allows_none(field.annotation)
                and not _accepts_text(field.annotation, value)
            ):
                out[key] = None
        return out


def validation_message(exc: ValidationError, root: str = "") -> str:
    """One readable line per problem: ``path.to.key: what is wrong (got …)``."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in (root, *err["loc"]) if p != "")
        got = err.get("input")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        if err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{path or '<root>'}: {msg}{shown}")
    return "; ".join(lines)


def parse_model(model: type[StrictModel], data: dict, root: str = "") -> StrictModel:
    """Validate ``data`` into ``model``; raise :class:`ConfigError` naming the key paths."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, root)) from None


__all__ = ["MAX_SEED", "NONE", "Seed", "StrictModel", "parse_model", "validation_message"]
