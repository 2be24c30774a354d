#!/usr/bin/env bash
# The GPU check, for a machine with a CUDA device: the fast GPU tests, then `drdfl run` with
# every method and one seed on the `quick` and the `paper` profile with --device cuda.
# Writes to $OUT (default benchmarks/results/gpu): wall time of each run and of each stage
# (from the run's timings.csv), peak GPU memory (nvidia-smi sampled every 200 ms: the whole
# device, CUDA context included), the logs, and a summary in gpu_check.json / gpu_check.md.
#
#   OUT=/tmp/gpu DRDFL_DATA_DIR=/path/to/shared/data bash benchmarks/gpu_check.sh
#
# Settings: PYTHON (interpreter, default python3), QUICK_LIMIT_S / PAPER_LIMIT_S (time limit
# of each run; a run cut off is reported as such), PROFILES (default "quick paper").
set -uo pipefail

OUT=${OUT:-benchmarks/results/gpu}
PY=${PYTHON:-python3}
PROFILES=${PROFILES:-quick paper}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
export DRDFL_CACHE_DIR="$OUT/cache"

{
  date -u
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA DEVICE')"
} >"$OUT/machine.txt" 2>&1

nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 200 \
  >"$OUT/gpu_memory.csv" 2>/dev/null &
SAMPLER=$!
trap 'kill "$SAMPLER" 2>/dev/null' EXIT

echo "step,exit,seconds,start_epoch_s,end_epoch_s" >"$OUT/steps.csv"
step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, record exit and wall time
  local name=$1 limit=$2
  shift 2
  local start end rc
  start=$(date +%s.%N)
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  local seconds
  seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  echo "$name,$rc,$seconds,$start,$end" >>"$OUT/steps.csv"
  echo "$name: exit $rc after $seconds s"
}

step gpu-tests 120 "$PY" -m pytest -q -m gpu -k "not profile_runs" tests/test_gpu.py
for profile in $PROFILES; do
  case $profile in
    quick) limit=${QUICK_LIMIT_S:-180} ;;
    *) limit=${PAPER_LIMIT_S:-420} ;;
  esac
  step "run-$profile" "$limit" "$PY" -m drdfl run --profile "$profile" --device cuda \
    --set seeds=0 --out "$OUT/$profile" --no-progress
done
kill "$SAMPLER" 2>/dev/null

"$PY" - "$OUT" <<'EOF'
"""Summarise the check: wall time per run and stage, peak GPU memory during each run."""
import json
import sys
from pathlib import Path

import pandas as pd

out = Path(sys.argv[1])
steps = pd.read_csv(out / "steps.csv")
memory = pd.read_csv(out / "gpu_memory.csv", names=["time", "mib"], skipinitialspace=True)
memory["t"] = pd.to_datetime(memory["time"], format="%Y/%m/%d %H:%M:%S.%f").map(
    lambda t: t.timestamp()
)
summary = {"steps": [], "machine": (out / "machine.txt").read_text()}
lines = ["# GPU check", "", "| step | exit | wall time | peak GPU memory |", "|---|---|---|---|"]
for row in steps.itertuples():
    during = memory[(memory.t >= row.start_epoch_s - 1) & (memory.t <= row.end_epoch_s + 1)]
    peak = float(during.mib.max()) if len(during) else None
    entry = {"step": row.step, "exit": int(row.exit), "seconds": float(row.seconds),
             "peak_gpu_mib": peak}
    timings = out / row.step.removeprefix("run-") / "timings.csv"
    if row.step.startswith("run-") and timings.is_file():
        t = pd.read_csv(timings)
        entry["stages_s"] = t.groupby("stage")["seconds"].sum().round(1).to_dict()
        entry["units_s"] = t.groupby("method")["seconds"].sum().round(1).to_dict()
    summary["steps"].append(entry)
    cut = " (time limit)" if row.exit in (124, 137) else ""
    lines.append(f"| {row.step} | {row.exit}{cut} | {row.seconds:.0f} s | "
                 f"{'–' if peak is None else f'{peak:.0f} MiB'} |")
    for stage, seconds in entry.get("stages_s", {}).items():
        lines.append(f"| {row.step}: {stage} (all units) | | {seconds:.0f} s | |")
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
