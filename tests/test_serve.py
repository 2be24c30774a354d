"""``drdfl serve``: the real server started on a free port and queried over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from drdfl.config import DataConfig
from drdfl.data.synthetic import generate
from drdfl.methods.settings import TrainConfig
from drdfl.serve import load_planner

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from drdfl.runner.steps import build_suite, save_trained, train_model

    suite = build_suite(DataConfig(synthetic_days=0.2, lead=2, horizon=3))
    model, _ = train_model(
        "mse", suite, task="replicas", forecaster="mlp", train=TrainConfig(epochs=1, patience=None)
    )
    return save_trained(model, suite, tmp_path_factory.mktemp("serve") / "model")


def _start(model_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    entry = "from drdfl.cli import main; main()"
    command = [sys.executable, "-c", entry, "serve", str(model_dir), "--port", str(port)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[str]:
    port = _free_port()
    process = _start(model_dir, port)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"drdfl serve exited with {process.returncode}: {process.stderr.read()}"
                )
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("drdfl serve did not answer /healthz within 120 s")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_plan_answers_the_planners_decision(server: str, model_dir: Path) -> None:
    demand = generate(0.02, "chat", seed=5).values
    with httpx.Client(base_url=server, timeout=10) as client:
        before = client.get("/keda")
        assert before.status_code == 503 and "POST /plan" in before.json()["detail"]
        health = client.get("/healthz").json()
        answer = client.post("/plan", json={"demand": demand.tolist()})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        again = client.get("/healthz").json()
        metrics = client.get("/metrics")
        keda = client.get("/keda").json()
    expected = load_planner(model_dir).plan(demand)
    assert body["replicas"] == [int(r) for r in expected.replicas]
    np.testing.assert_allclose(body["forecast_tokens"], expected.forecast_tokens, rtol=1e-6)
    assert body["slot_offset"] == [2, 3, 4] and body["lead"] == 2 and body["interval_s"] == 5.0
    assert health["status"] == "ok" and health["window"] == 7 and health["horizon"] == 3
    # the model is loaded once: the same load time before and after a plan
    assert again["loaded_at"] == health["loaded_at"] and again["plans"] == health["plans"] + 1
    assert metrics.headers["content-type"].startswith("text/plain")
    assert f"drdfl_replicas {body['replicas'][0]}\n" in metrics.text
    assert 'drdfl_planned_replicas{slot_offset="4"}' in metrics.text
    assert keda["replicas"] == body["replicas"][0]


def test_a_plan_with_a_start_time_names_its_slots(server: str) -> None:
    answer = httpx.post(
        f"{server}/plan", json={"demand": [400_000.0] * 10, "start": "2024-05-13T00:00:00Z"}
    )
    assert answer.status_code == 200
    assert answer.json()["slot_start"][0] == "2024-05-13T00:01:00+00:00"  # slot 12 at 5 s


@pytest.mark.parametrize(
    ("payload", "field", "expected"),
    [
        ({}, ["body", "demand"], "required"),
        ({"demand": [1.0, 2.0]}, ["body", "demand"], "at least 7"),
        ({"demand": [1.0] * 6 + [-3.0]}, ["body", "demand", 6], "greater than or equal to 0"),
        ({"demand": [1.0] * 6 + ["many"]}, ["body", "demand", 6], "valid number"),
        ({"demand": [1.0] * 6 + [True]}, ["body", "demand", 6], "valid number"),
        ({"demand": "1,2,3"}, ["body", "demand"], "valid list"),
        ({"demand": [1.0] * 7, "extra": 1}, ["body", "extra"], "not permitted"),
        ({"demand": [1.0] * 7, "start": "yesterday"}, ["body", "start"], "datetime"),
    ],
)
def test_a_bad_payload_is_a_4xx_naming_the_field(
    server: str, payload: dict, field: list, expected: str
) -> None:
    answer = httpx.post(f"{server}/plan", json=payload)
    assert 400 <= answer.status_code < 500, answer.text
    detail = answer.json()["detail"]
    assert any(d["loc"] == field and expected in d["msg"] for d in detail), detail


def test_what_is_not_json_is_a_4xx_and_the_server_keeps_serving(server: str) -> None:
    for content in (b"NaN", b'{"demand": [1, 2, NaN, 4, 5, 6, 7]}', b"{not json", b""):
        answer = httpx.post(
            f"{server}/plan", content=content, headers={"content-type": "application/json"}
        )
        assert 400 <= answer.status_code < 500, (content, answer.text)
    assert httpx.get(f"{server}/healthz").status_code == 200
    metrics = httpx.get(f"{server}/metrics").text
    rejected = [line for line in metrics.splitlines() if line.startswith("drdfl_rejected_total")]
    assert rejected and int(rejected[0].split()[1]) >= 1


def test_a_port_in_use_is_one_line_with_exit_2(server: str, model_dir: Path) -> None:
    port = int(server.rsplit(":", 1)[1])
    process = _start(model_dir, port)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1
