"""The backtest: a trace replayed as a planner runs, against the rules autoscalers use.

At every slot ``t`` a policy decides, from the demand of slots ``0 … t-1`` only, how many
replicas run in slot ``t + lead`` (a replica started at ``t`` is ready then). Each policy
is a plain object with a ``name`` and ``decide(replay) -> replicas [N]`` for the replay's
decision slots; :class:`Replay` hands it the trailing windows of demand it may read, so
every policy is one batched array operation over all decision slots. The rules:

* ``last-value``: the replicas the last observed slot would have needed;
* ``moving-average``: those of the mean over the last ``window_s`` seconds;
* ``reactive``: a Kubernetes-HPA-style scaler, ``ceil(recent demand / (μ · interval_s ·
  target_utilization))`` replicas (the headroom is ``1 - target_utilization``), never
  scaling down within ``stabilization_s`` of a higher recommendation;
* ``recent-quantile``: the replicas that would have cost least over the last ``window_s``
  seconds, i.e. the critical-ratio quantile of their demand;
* ``model``: the trained forecaster through :class:`~drdfl.evaluation.planning.Planner`
  (the one planning function); ``model+online``: its forecasts recalibrated online in
  time order (:mod:`drdfl.evaluation.online`);
* ``oracle``: perfect foresight of the slot decided for, for reference.

All policies are scored on the same slots. Per policy: the GPU-hours it runs, the share
of tokens it leaves unserved, the share of slots whose demand exceeds its capacity (an SLO
violation), the money it costs (the replicas task's operating cost), and — to compare
policies at a matched SLO — the headroom factor on its replicas that brings its SLO
violations down to ``slo_target`` and the GPU-hours it then runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from drdfl.errors import ConfigError, DataError
from drdfl.evaluation.online import OnlineSettings, anchor_rules, recalibrate
from drdfl.evaluation.planning import Planner
from drdfl.tasks.replicas import SECONDS_PER_HOUR, ReplicasTask

#: columns of ``backtest.csv``, in order
COLUMNS = (
    "policy",
    "gpu_hours",
    "unserved_share",
    "slo_violation_share",
    "cost",
    "headroom_at_slo",
    "gpu_hours_at_slo",
)


@dataclass
class Replay:
    """A demand trace (tokens per slot) replayed with decisions at ``times``.

    The decision made at slot ``t`` is for slot ``t + lead`` and may read slots before
    ``t`` only.
    """

    demand: np.ndarray
    times: np.ndarray
    lead: int
    task: ReplicasTask

    @property
    def interval_s(self) -> float:
        return self.task.interval_s

    def slots(self, seconds: float) -> int:
        """``seconds`` as a whole number of slots (at least one)."""
        return max(1, round(seconds / self.interval_s))

    def history(self, slots: int) -> np.ndarray:
        """``[N, slots]``: the demand of the ``slots`` slots before each decision slot."""
        if slots > int(self.times.min()):
            raise ConfigError(
                f"backtest: a policy reads {slots} slots back, the first decision has "
                f"{int(self.times.min())}"
            )
        views = np.lib.stride_tricks.sliding_window_view(self.demand, slots)
        return views[self.times - slots]

    @property
    def decided(self) -> np.ndarray:
        """``[N]``: the demand of the slot each decision is for."""
        return self.demand[self.times + self.lead]

    def replicas_for(self, demand: np.ndarray) -> np.ndarray:
        """Whole replicas the replicas task chooses for each row's equally likely demands
        ``[N, S]`` (one column: a known demand)."""
        with torch.inference_mode():
            return self.task.optimal_replicas(torch.as_tensor(demand, dtype=torch.float64)).numpy()


class Policy(Protocol):
    """A planner under test: ``decide`` returns the replicas ``[N]`` it runs in the slot
    each of ``replay.times`` decides for, reading only the demand before it."""

    name: str

    def reads_slots(self, replay: Replay) -> int:
        """Slots of history it reads before its first decision."""
        ...

    def decide(self, replay: Replay) -> np.ndarray: ...


@dataclass
class LastValue:
    """The replicas the last observed slot would have needed."""

    name: str = "last-value"

    def reads_slots(self, replay: Replay) -> int:
        return 1

    def decide(self, replay: Replay) -> np.ndarray:
        return replay.replicas_for(replay.history(1))


@dataclass
class MovingAverage:
    """The replicas the mean demand of the last ``window_s`` seconds would have needed."""

    window_s: float = 60.0
    name: str = "moving-average"

    def reads_slots(self, replay: Replay) -> int:
        return replay.slots(self.window_s)

    def decide(self, replay: Replay) -> np.ndarray:
        mean = replay.history(self.reads_slots(replay)).mean(axis=1, keepdims=True)
        return replay.replicas_for(mean)


@dataclass
class Reactive:
    """A utilisation-targeting scaler in the manner of the Kubernetes HPA.

    Recommends ``ceil(mean demand over metric_s / (μ · interval_s · target_utilization))``
    replicas at every slot and runs the largest recommendation of the last
    ``stabilization_s`` seconds (it scales up at once, down only after that long).
    """

    target_utilization: float = 0.7
    metric_s: float = 15.0
    stabilization_s: float = 300.0
    name: str = "reactive"

    def __post_init__(self) -> None:
        if not 0 < self.target_utilization <= 1:
            raise ConfigError(
                f"reactive: target_utilization must be in (0, 1], got {self.target_utilization}"
            )

    def reads_slots(self, replay: Replay) -> int:
        return replay.slots(self.metric_s) + replay.slots(self.stabilization_s) - 1

    def decide(self, replay: Replay) -> np.ndarray:
        metric, hold = replay.slots(self.metric_s), replay.slots(self.stabilization_s)
        # recommendations at every slot from the earliest one the hold reaches back to
        first = int(replay.times.min()) - hold + 1
        at = np.arange(first, int(replay.times.max()) + 1)
        recent = np.lib.stride_tricks.sliding_window_view(replay.demand, metric)[at - metric]
        p = replay.task.params
        per = replay.task.tokens_per_replica_slot * self.target_utilization
        wanted = np.clip(np.ceil(recent.mean(axis=1) / per - 1e-9), p.min_replicas, p.max_replicas)
        held = np.lib.stride_tricks.sliding_window_view(wanted, hold).max(axis=1)
        return held[replay.times - int(replay.times.min())]


@dataclass
class RecentQuantile:
    """The replicas that would have cost least over the last ``window_s`` seconds: the
    critical-ratio quantile of their demand, whole replicas as the cost says."""

    window_s: float = 300.0
    name: str = "recent-quantile"

    def reads_slots(self, replay: Replay) -> int:
        return replay.slots(self.window_s)

    def decide(self, replay: Replay) -> np.ndarray:
        return replay.replicas_for(replay.history(self.reads_slots(replay)))


@dataclass
class ModelPolicy:
    """A trained forecaster deciding through the planner, every slot in one batched pass."""

    planner: Planner
    name: str = "model"

    def reads_slots(self, replay: Replay) -> int:
        return self.planner.window

    def decide(self, replay: Replay) -> np.ndarray:
        _, replicas = self.planner.decide_windows(replay.history(self.planner.window))
        return replicas[:, 0]


@dataclass
class OnlineModelPolicy:
    """The model's forecasts recalibrated online in time order: before each decision the
    correction that would have cost least on the slots already observed."""

    planner: Planner
    name: str = "model+online"
    settings: OnlineSettings = field(default_factory=OnlineSettings)

    def reads_slots(self, replay: Replay) -> int:
        return self.planner.window

    def decide(self, replay: Replay) -> np.ndarray:
        from drdfl.data.windows import Windows
        from drdfl.evaluation.metrics import score_windows

        planner = self.planner
        halflife = self.settings.halflife
        if replay.times.shape[0] <= halflife:
            raise DataError(
                f"backtest: {replay.times.shape[0]} decisions; the online recalibration "
                f"needs more than its half-life of {halflife:g}: replay a longer trace, or "
                "leave the online policy out"
            )
        x = planner.scaler.transform(replay.history(planner.window))
        h = planner.horizon
        targets = replay.times[:, None] + replay.lead + np.arange(h)[None, :]
        # the last decisions' later horizon slots may run past the trace: repeat its end
        y = replay.demand[np.minimum(targets, replay.demand.shape[0] - 1)]
        windows = Windows(
            x.astype(np.float32),
            planner.scaler.transform(y).astype(np.float32),
            replay.times - planner.window,
            "backtest",
            replay.lead,
        )
        scores = score_windows(
            planner.forecaster, windows, planner.scaler, replay.task, dedupe=False
        )
        again = recalibrate(
            scores,
            windows,
            planner.scaler,
            replay.task,
            anchor_rules(planner.forecaster, self.settings.rules),
            self.settings,
        )
        return again.decision[:, 0]


@dataclass
class Oracle:
    """Perfect foresight of the slot decided for (a bound, not a policy one can run)."""

    name: str = "oracle"

    def reads_slots(self, replay: Replay) -> int:
        return 0

    def decide(self, replay: Replay) -> np.ndarray:
        return replay.replicas_for(replay.decided[:, None])


def default_rules() -> list[Policy]:
    """The autoscaler rules every backtest compares with."""
    return [LastValue(), MovingAverage(), Reactive(), RecentQuantile()]


def online_available() -> bool:
    """Whether the online recalibration (``drdfl.evaluation.online``) is installed."""
    import importlib.util

    return importlib.util.find_spec("drdfl.evaluation.online") is not None


def model_policies(planner: Planner, label: str = "model", online: bool = True) -> list[Policy]:
    """The model's policy, and its online recalibration where that is available."""
    policies: list[Policy] = [ModelPolicy(planner, label)]
    if online and online_available():
        policies.append(OnlineModelPolicy(planner, f"{label}+online"))
    return policies


@dataclass
class BacktestResult:
    """Every policy's replicas on the replayed slots and their summary."""

    slots: np.ndarray
    demand: np.ndarray
    replicas: dict[str, np.ndarray]
    task: ReplicasTask
    slo_target: float
    #: slots between a decision and the slot it is for
    lead: int = 0
    #: time of slot 0 of the trace (``None`` without timestamps)
    start: pd.Timestamp | None = None

    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per policy with the columns of :data:`COLUMNS`."""
        rows = [self._row(name, r) for name, r in self.replicas.items()]
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def capacity_tokens(self, name: str) -> np.ndarray:
        """Tokens per slot the policy's replicas serve."""
        return self.replicas[name] * self.task.tokens_per_replica_slot

    def series_frame(self) -> pd.DataFrame:
        """Per replayed slot: its index, the demand and every policy's replicas."""
        frame = pd.DataFrame({"slot": self.slots, "demand_tokens": self.demand})
        for name, r in self.replicas.items():
            frame[name] = r.astype(np.int64)
        return frame

    def _summary(self, replicas: np.ndarray) -> tuple[float, float, float, float]:
        t = self.task
        capacity = replicas * t.tokens_per_replica_slot
        unserved = np.maximum(self.demand - capacity, 0.0)
        total = float(self.demand.sum())
        gpu_hours = float(replicas.sum() * t.interval_s / SECONDS_PER_HOUR)
        cost = float(
            (t.cost_per_replica_slot * replicas).sum()
            + t.params.penalty_per_unserved_token * unserved.sum()
        )
        share = float(unserved.sum() / total) if total > 0 else 0.0
        violations = float(np.mean(self.demand > capacity + 1e-9))
        return gpu_hours, share, violations, cost

    def _row(self, name: str, replicas: np.ndarray) -> dict[str, Any]:
        gpu_hours, share, violations, cost = self._summary(replicas)
        headroom = matched_headroom(replicas, self.demand, self.task, self.slo_target)
        at_slo = (
            self._summary(with_headroom(replicas, headroom, self.task))[0]
            if math.isfinite(headroom)
            else math.nan
        )
        return {
            "policy": name,
            "gpu_hours": gpu_hours,
            "unserved_share": share,
            "slo_violation_share": violations,
            "cost": cost,
            "headroom_at_slo": headroom,
            "gpu_hours_at_slo": at_slo,
        }


def with_headroom(replicas: np.ndarray, factor: float, task: ReplicasTask) -> np.ndarray:
    """``replicas`` times ``factor``, rounded up to whole replicas within the bounds."""
    p = task.params
    return np.clip(np.ceil(replicas * factor - 1e-9), p.min_replicas, p.max_replicas)


def matched_headroom(
    replicas: np.ndarray, demand: np.ndarray, task: ReplicasTask, slo_target: float
) -> float:
    """The least factor (between 1/8 and 8, to 0.1 %) on ``replicas`` whose slots exceed
    capacity no more often than ``slo_target``; NaN when even 8 does not."""
    per = task.tokens_per_replica_slot

    def violations(factor: float) -> float:
        return float(np.mean(demand > with_headroom(replicas, factor, task) * per + 1e-9))

    low, high = 1.0 / 8.0, 8.0
    if violations(high) > slo_target:
        return math.nan
    if violations(low) <= slo_target:
        return low
    while high / low > 1.001:
        mid = math.sqrt(low * high)
        if violations(mid) <= slo_target:
            high = mid
        else:
            low = mid
    return high


def backtest(
    demand: np.ndarray,
    policies: Sequence[Policy],
    task: ReplicasTask,
    lead: int = 0,
    slo_target: float = 0.01,
    start: pd.Timestamp | None = None,
    source: str = "trace",
) -> BacktestResult:
    """Replay ``demand`` (tokens per slot) with every policy deciding at every slot from
    what is known then; all are scored on the slots every policy can decide for."""
    values = np.asarray(demand, dtype=np.float64)
    if values.ndim != 1:
        raise DataError(f"{source}: expected a 1-D series of tokens per slot")
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(f"{source}: slot {first} holds {values[first]!r}; expected tokens >= 0")
    if not 0 <= slo_target < 1:
        raise ConfigError(f"backtest: slo_target must be in [0, 1), got {slo_target}")
    if lead < 0:
        raise ConfigError(f"backtest: lead must be >= 0, got {lead}")
    names = [p.name for p in policies]
    if len(set(names)) < len(names):
        raise ConfigError(f"backtest: two policies share a name ({', '.join(names)})")
    probe = Replay(values, np.array([values.shape[0]]), lead, task)
    first = max([1, *(p.reads_slots(probe) for p in policies)])
    last = values.shape[0] - lead - 1
    if last < first:
        raise DataError(
            f"{source}: {values.shape[0]} slots of {task.interval_s:g} s; a replay with a lead "
            f"of {lead} needs more than {first + lead} (the longest history a policy reads "
            "plus the lead)"
        )
    replay = Replay(values, np.arange(first, last + 1), lead, task)
    decided = {p.name: np.asarray(p.decide(replay), dtype=np.float64) for p in policies}
    return BacktestResult(
        replay.times + lead, replay.decided, decided, task, slo_target, lead, start
    )


__all__ = [
    "COLUMNS",
    "BacktestResult",
    "LastValue",
    "ModelPolicy",
    "MovingAverage",
    "OnlineModelPolicy",
    "Oracle",
    "Policy",
    "Reactive",
    "RecentQuantile",
    "Replay",
    "backtest",
    "default_rules",
    "matched_headroom",
    "model_policies",
    "online_available",
    "with_headroom",
]
