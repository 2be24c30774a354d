"""The planning service an autoscaler can poll (``drdfl serve``; the ``serve`` extra).

Endpoints:

``POST /plan``
    ``{"demand": [tokens per slot, oldest first], "start": ISO time of its first slot
    (optional)}`` → ``{"replicas": [...], "forecast_tokens": [...], "expected_cost":
    [...], "slot_offset": [...], "slot_start": [...] | null, "lead": L, "interval_s": s}``
    for the slots ``lead … lead + horizon - 1`` after the last one given. A payload that
    is not that is a 422 naming the field (``detail[].loc``) and what was expected.
``GET /healthz``
    ``{"status": "ok", ...}`` with what the model decides with and when it was loaded.
``GET /metrics``
    Prometheus text: ``drdfl_replicas`` (the replicas of the latest plan's first slot:
    what to start now), ``drdfl_planned_replicas`` and ``drdfl_forecast_tokens`` per
    planned slot, ``drdfl_plans_total``, ``drdfl_rejected_total`` and the latest plan's
    time.
``GET /keda``
    The latest plan for KEDA's ``metrics-api`` scaler, ``{"replicas": N, ...}``
    (``valueLocation: replicas``); 503 until a plan has been made.

The model is loaded once, before the first request; every request plans with it.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from drdfl._version import __version__
from drdfl.errors import DrdflError
from drdfl.evaluation.planning import MAX_TOKENS, Plan, Planner

#: the most slots one request may carry (a week of 5 s slots)
MAX_SLOTS = 120_960

Tokens = Annotated[float, Field(ge=0, le=MAX_TOKENS, allow_inf_nan=False, strict=True)]


class PlanRequest(BaseModel):
    """The demand seen so far, oldest slot first."""

    model_config = ConfigDict(extra="forbid")

    demand: list[Tokens] = Field(
        min_length=1, max_length=MAX_SLOTS, description="tokens per slot, oldest first"
    )
    start: datetime | None = Field(None, description="time of the first slot of demand")


class _State:
    """What the service remembers between requests (guarded by a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.plans = 0
        self.rejected = 0
        self.latest: Plan | None = None
        self.latest_at = 0.0


def create_app(planner: Planner, model_dir: str | Path = "") -> FastAPI:
    """The service answering plans of ``planner`` (loaded once, by the caller)."""
    state = _State()
    loaded_at = datetime.now().astimezone().isoformat(timespec="seconds")
    app = FastAPI(title="drdfl planner", version=__version__)

    def reject(field: str, message: str, kind: str = "value_error") -> HTTPException:
        with state.lock:
            state.rejected += 1
        return HTTPException(422, [{"loc": ["body", field], "msg": message, "type": kind}])

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Only where and what: the offending input may be NaN, which JSON cannot carry.
        with state.lock:
            state.rejected += 1
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.post("/plan")
    def plan(request: PlanRequest) -> dict[str, Any]:
        if len(request.demand) < planner.window:
            raise reject(
                "demand",
                f"{len(request.demand)} slot(s) of {planner.interval_s:g} s; the model needs "
                f"at least {planner.window} (its window), oldest first",
                "too_short",
            )
        try:
            made = planner.plan(request.demand, request.start, source="demand")
        except DrdflError as exc:
            raise reject("demand", str(exc)) from None
        with state.lock:
            state.plans += 1
            state.latest, state.latest_at = made, time.time()
        return made.to_dict()

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": str(model_dir),
            "loaded_at": loaded_at,
            "plans": state.plans,
            "drdfl": __version__,
            **planner.describe(),
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        with state.lock:
            latest, at, plans, rejected = state.latest, state.latest_at, state.plans, state.rejected
        lines = [
            "# HELP drdfl_plans_total Plans answered.",
            "# TYPE drdfl_plans_total counter",
            f"drdfl_plans_total {plans}",
            "# HELP drdfl_rejected_total Plan requests refused as malformed.",
            "# TYPE drdfl_rejected_total counter",
            f"drdfl_rejected_total {rejected}",
        ]
        if latest is not None:
            offsets = latest.to_dict()["slot_offset"]
            lines += [
                "# HELP drdfl_replicas Replicas of the latest plan's first slot (start now).",
                "# TYPE drdfl_replicas gauge",
                f"drdfl_replicas {int(latest.replicas[0])}",
                "# HELP drdfl_planned_replicas Replicas per planned slot (slots after the "
                "history's end).",
                "# TYPE drdfl_planned_replicas gauge",
                *(
                    f'drdfl_planned_replicas{{slot_offset="{o}"}} {int(r)}'
                    for o, r in zip(offsets, latest.replicas, strict=True)
                ),
                "# HELP drdfl_forecast_tokens Forecast tokens per planned slot.",
                "# TYPE drdfl_forecast_tokens gauge",
                *(
                    f'drdfl_forecast_tokens{{slot_offset="{o}"}} {float(v):.6g}'
                    for o, v in zip(offsets, latest.forecast_tokens, strict=True)
                ),
                "# HELP drdfl_plan_timestamp_seconds When the latest plan was made (Unix time).",
                "# TYPE drdfl_plan_timestamp_seconds gauge",
                f"drdfl_plan_timestamp_seconds {at:.3f}",
            ]
        return PlainTextResponse(
            "\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/keda")
    def keda() -> dict[str, Any]:
        with state.lock:
            latest, at = state.latest, state.latest_at
        if latest is None:
            raise HTTPException(503, "no plan yet: POST /plan with the recent demand first")
        return {
            "replicas": int(latest.replicas[0]),
            "forecast_tokens": float(latest.forecast_tokens[0]),
            "plan_age_s": round(time.time() - at, 3),
        }

    return app


def check_port(host: str, port: int) -> None:
    """Raise a one-line :class:`DrdflError` when ``host:port`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DrdflError(f"cannot listen on {host}:{port} ({exc.strerror})") from None


def serve(
    planner: Planner,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_dir: str | Path = "",
    log_level: str = "warning",
) -> None:
    """Serve ``planner`` on ``host:port`` until interrupted."""
    import uvicorn

    check_port(host, port)
    torch.set_num_threads(1)  # one small forward pass per request: no gain from more
    app = create_app(planner, model_dir)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


__all__ = ["MAX_SLOTS", "PlanRequest", "check_port", "create_app", "serve"]
