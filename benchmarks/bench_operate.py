"""Benchmark: the operator's commands on one day of 5-s demand.

* ``plan``: the plan after one day of history (17,280 slots, a binned CSV read from disk),
  the model already loaded, on one CPU thread; and with the model's loading included.
  Target ≤ 0.5 s (the former).
* ``backtest``: a replay with 17,280 decisions (one day of 5-s slots, plus the history
  the policies read and the lead), every policy including the model's online
  recalibration, the files and figure written; one CPU thread. Target ≤ 10 s.
* ``serve``: ``drdfl serve`` started for real, and an open-loop client (httpx, asyncio)
  sending ``--rate`` plan requests per second, each with the last hour of demand (720
  slots), for ``--seconds``; latency from sending to the full answer, client and server on
  the same machine. Target: p99 ≤ 50 ms at 50 requests/s on 2 cores.

The model is trained here (``--method``, one epoch, the replicas task, a lead of 24 slots
= 2 min, a horizon of 3) on the built-in synthetic data; its forecaster is ``--forecaster``.
Results go to ``benchmarks/results/operate.json``.

    python benchmarks/bench_operate.py [--quick] [--forecaster lstm] [--rate 50] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS_DIR, machine

DAY = 17_280
LEAD, HORIZON = 24, 3
TARGETS = {"plan_s": 0.5, "backtest_s": 10.0, "serve_p99_ms": 50.0}
#: the longest history a backtest policy reads at 5 s (the reactive scaler: 15 s + 300 s)
READ_SLOTS = 62


def _train(directory: Path, method: str, forecaster: str) -> Path:
    from drdfl.config import DataConfig
    from drdfl.methods.settings import TrainConfig
    from drdfl.runner.steps import build_suite, save_trained, train_model

    suite = build_suite(DataConfig(synthetic_days=1.0, lead=LEAD, horizon=HORIZON))
    model, _ = train_model(
        method, suite, task="replicas", forecaster=forecaster, train=TrainConfig(epochs=1)
    )
    return save_trained(model, suite, directory)


def _median(fn: Any, times: int) -> dict[str, Any]:
    runs = []
    for _ in range(times):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(runs), 4), "runs_s": [round(r, 4) for r in runs]}


def bench_plan(model: Path, history: Path, times: int) -> dict[str, Any]:
    from drdfl.serve import load_planner, plan_file

    planner = load_planner(model)
    plan_file(planner, history)  # warm: first calls allocate
    return {
        "history_slots": DAY,
        "plan": _median(lambda: plan_file(planner, history), times),
        "load_and_plan": _median(lambda: plan_file(load_planner(model), history), times),
        "target_s": TARGETS["plan_s"],
    }


def bench_backtest(model: Path, trace: Path, out: Path, times: int) -> dict[str, Any]:
    from drdfl.runner.operate import backtest_model

    result, _ = backtest_model(model, trace, out)
    if len(result.slots) != DAY:
        raise RuntimeError(f"the replay made {len(result.slots)} decisions, not {DAY}")
    timing = _median(lambda: backtest_model(model, trace, out), times)
    return {
        "decisions": len(result.slots),
        "policies": list(result.replicas),
        "backtest": timing,
        "target_s": TARGETS["backtest_s"],
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _load(url: str, payload: dict[str, Any], rate: float, seconds: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=10.0, limits=limits) as client:
        for _ in range(20):  # warm connections and the server
            await client.post("/plan", json=payload)

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                answer = await client.post("/plan", json=payload)
                if answer.status_code != 200:
                    errors += 1
                    return
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append(time.perf_counter() - started)

        n = int(rate * seconds)
        begun = time.perf_counter()
        tasks = []
        for i in range(n):  # open loop: request i is sent at i / rate, whatever came back
            delay = begun + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - begun
    ms = np.asarray(latencies) * 1000
    return {
        "requests": n,
        "answered": len(latencies),
        "errors": errors,
        "achieved_rate_per_s": round(n / wall, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if ms.size else None,
        "p95_ms": round(float(np.percentile(ms, 95)), 2) if ms.size else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if ms.size else None,
        "max_ms": round(float(ms.max()), 2) if ms.size else None,
    }


def bench_serve(model: Path, demand: np.ndarray, rate: float, seconds: float) -> dict[str, Any]:
    import httpx

    port = _free_port()
    entry = "from drdfl.cli import main; main()"
    command = [sys.executable, "-c", entry, "serve", str(model), "--port", str(port)]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"drdfl serve exited: {server.stderr.read()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("drdfl serve did not start within 120 s")
            time.sleep(0.2)
        payload = {"demand": demand[-720:].tolist()}
        result = asyncio.run(_load(url, payload, rate, seconds))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return {
        "payload_slots": 720,
        "rate_per_s": rate,
        "seconds": seconds,
        "cores": len(os.sched_getaffinity(0)),
        **result,
        "target_p99_ms": TARGETS["serve_p99_ms"],
    }


def main() -> None:
    from drdfl._io import write_json
    from drdfl.data.readers import binned
    from drdfl.data.synthetic import generate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short measurement (smoke check)")
    parser.add_argument("--method", default="dfl", help="method the model is trained with")
    parser.add_argument("--forecaster", default="lstm")
    parser.add_argument("--rate", type=float, default=50.0, help="plan requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "operate.json")
    args = parser.parse_args()
    facts = machine(threads=1)
    seconds = 3.0 if args.quick else args.seconds
    times = 2 if args.quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = _train(work / "model", args.method, args.forecaster)
        day = generate(1.0, "chat", seed=7)
        history = work / "history.csv"
        binned.write(day, history)
        # a day of decisions: one day plus the history the policies read and the lead
        longer = generate(1.01, "chat", seed=8)
        trace = work / "trace.csv"
        binned.write(longer.slice(0, DAY + READ_SLOTS + LEAD), trace)
        result = {
            "machine": facts,
            "model": {
                "method": args.method,
                "forecaster": args.forecaster,
                "lead": LEAD,
                "horizon": HORIZON,
                "task": "replicas",
            },
            "plan": bench_plan(model, history, times),
            "backtest": bench_backtest(model, trace, work / "bt", times),
            "serve": bench_serve(model, day.values, args.rate, seconds),
            "quick": args.quick,
        }
    result["targets"] = {
        "plan": result["plan"]["plan"]["median_s"] <= TARGETS["plan_s"],
        "backtest": result["backtest"]["backtest"]["median_s"] <= TARGETS["backtest_s"],
        "serve": (result["serve"]["p99_ms"] or float("inf")) <= TARGETS["serve_p99_ms"]
        and result["serve"]["errors"] == 0,
    }
    write_json(args.output, result)
    print(f"wrote {args.output}: {result['targets']}")


if __name__ == "__main__":
    main()
