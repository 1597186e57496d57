#!/usr/bin/env bash
# Every jaxdet benchmark on one GPU: boxes, losses (+ YOLOv1/SSD), polygons, the YOLOv8 loss (TAL + v8 loss,
# with peak memory at 1,000 GT/image), the train step, the YOLOv8n, YOLO11n and YOLO26n train steps against
# ultralytics (batch 8 of 320-px and batch 16 of 640-px images, one run per model), and the dense-loss roofline
# (B=64, 8400 anchors, 80 classes), within a wall-clock budget (--budget-s, 470 s: what does not fit is listed as
# skipped). The YOLO train steps, each compiled by XLA and by torch.compile at two sizes, need most of a budget of
# their own: run them with --only, one model per call where a call may last at most 10 minutes. Prints each table
# with the device name and writes them all to benchmarks/results/gpu-<device>.md.
#
#   bash benchmarks/run_gpu.sh                     # on a GPU machine (JAX CUDA + torch CUDA)
#   bash benchmarks/run_gpu.sh --only yolo_train_step_yolo26n --budget-s 570 --out-dir /tmp/y26
#                                                  # one model's YOLO train-step rows (also _yolov8n, _yolo11n)
#   bash benchmarks/run_gpu.sh --cpu-smoke         # smoke test on the CPU: every script with --quick,
#                                                  #   output in /tmp/jaxdet-bench-smoke/gpu-cpu.md
#   JAXDET_CPU_SMOKE=1 bash benchmarks/run_gpu.sh  # same as --cpu-smoke
#
# Options:
#   --only LABELS        comma-separated labels of the benchmarks to run (default: all; the labels are
#                        train_step roofline boxes losses polygons yolov8_loss yolo_train_step_yolov8n
#                        yolo_train_step_yolo11n yolo_train_step_yolo26n train_step_large)
#   --out-dir DIR        where gpu-<device>.md goes (default benchmarks/results,
#                        or /tmp/jaxdet-bench-smoke with --cpu-smoke)
#   --peak-gbps N        peak DRAM bandwidth for the roofline (default: the table in benchmarks/roofline.py)
#   --repeats N          timed runs per contender (default: each script's own, 20)
#   --no-compile         skip the torch.compile contenders (much faster; compile dominates the budget)
#   --budget-s N         wall-clock budget for all scripts (default 470 s); each script gets what is left
#   --train-large        also run the train step at batch 256, 128x128 images (GPU-sized), if time is left
#
# Environment: PYTHON (interpreter, default python); LOG_DIR (full logs, default /tmp/jaxdet-bench-logs);
# XLA_PYTHON_CLIENT_MEM_FRACTION defaults to 0.5 so that torch, in the same process, keeps
# half of the GPU memory; JAXDET_TORCH_DEVICE (torch device of every script, via _timing.torch_device():
# default cuda when torch.cuda.is_available(), else cpu; --cpu-smoke sets it to cpu).
# Every script runs as a module from the repository root: python -m benchmarks.<name>.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
cd "$ROOT"

SMOKE="${JAXDET_CPU_SMOKE:-0}"
OUT_DIR=""
PEAK=()
COMMON=()
BUDGET=470
TRAIN_LARGE=0
ONLY=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu-smoke) SMOKE=1 ;;
    --out-dir) OUT_DIR="$2"; shift ;;
    --peak-gbps) PEAK=(--peak-gbps "$2"); shift ;;
    --repeats) COMMON+=(--repeats "$2"); shift ;;
    --no-compile) COMMON+=(--no-compile) ;;
    --budget-s) BUDGET="$2"; shift ;;
    --train-large) TRAIN_LARGE=1 ;;
    --only) ONLY=",$2,"; shift ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "run_gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

PY="${PYTHON:-python}"
if [[ "$SMOKE" == "1" ]]; then
  export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES="" JAXDET_TORCH_DEVICE=cpu
  # A CPU shared with other jobs makes OpenMP spin-waits in torch 10-100x slower; one thread is stable.
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  COMMON+=(--quick)
  OUT_DIR="${OUT_DIR:-/tmp/jaxdet-bench-smoke}"
else
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}"
  OUT_DIR="${OUT_DIR:-$ROOT/benchmarks/results}"
fi
LOG_DIR="${LOG_DIR:-/tmp/jaxdet-bench-logs}"
mkdir -p "$OUT_DIR" "$LOG_DIR"

read -r PLATFORM DEVICE_NAME < <("$PY" -c 'import jax; d = jax.devices()[0]; print(d.platform, d.device_kind)' \
  2>/dev/null)
# The device every script's torch side uses (benchmarks/_timing.py: torch_device(), as "cuda:0 (NAME)" or "cpu").
TORCH_DEVICE="$("$PY" -c 'from benchmarks import _timing; print(_timing.torch_device_label())' 2>/dev/null \
  || echo "unavailable")"
if [[ "$SMOKE" != "1" ]]; then
  if [[ "$PLATFORM" != "gpu" && "$PLATFORM" != "cuda" ]]; then
    echo "run_gpu.sh: JAX sees no GPU (platform '$PLATFORM'); install jax[cuda] or use --cpu-smoke" >&2
    exit 2
  fi
  if [[ "$TORCH_DEVICE" != cuda* ]]; then
    echo "run_gpu.sh: warning: the PyTorch contenders will run on '$TORCH_DEVICE', not on a GPU" \
      "(torch.cuda.is_available() is false, or JAXDET_TORCH_DEVICE is set)" >&2
  fi
fi
SLUG="$(echo "$DEVICE_NAME" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+|-+$//g')"
[[ "$SMOKE" == "1" ]] && SLUG="cpu"
REPORT="$OUT_DIR/gpu-$SLUG.md"
PARTS="$(mktemp -d)"
trap 'rm -rf "$PARTS"' EXIT

START=$(date +%s)
STATUS=()

# run_bench LABEL MODULE [ARGS...]: runs `python -m benchmarks.MODULE` with what is left of the budget; never
# aborts the suite.
run_bench() {
  local label="$1" module="$2"; shift 2
  local now left t0 rc part="$PARTS/$label.md"
  if [[ -n "$ONLY" && "$ONLY" != *",$label,"* ]]; then
    return 0
  fi
  now=$(date +%s); left=$(( BUDGET - (now - START) ))
  if (( left < 20 )); then
    STATUS+=("| $label | skipped (budget of ${BUDGET} s spent) | — |")
    printf '### %s\n\nskipped: the %s s budget was spent.\n' "$label" "$BUDGET" > "$part"
    return 0
  fi
  echo "=== $label: $PY -m benchmarks.$module $* (time left ${left} s)"
  t0=$(date +%s)
  set +e
  timeout --signal=TERM --kill-after=10 "$left" "$PY" -m "benchmarks.$module" "$@" --out "$part.table" \
    > "$PARTS/$label.log" 2>&1
  rc=$?
  set -e
  local took=$(( $(date +%s) - t0 ))
  cp "$PARTS/$label.log" "$LOG_DIR/$label.log" 2>/dev/null || true
  if [[ $rc -eq 0 && -s "$part.table" ]]; then
    cp "$part.table" "$part"
    # Every script puts its torch side on _timing.torch_device() (roofline.py: the same rule, --torch-device);
    # say so in the table only where the PyTorch columns did not run on a GPU.
    if [[ "$SMOKE" != "1" && "$TORCH_DEVICE" != cuda* ]]; then
      printf '\n> note: the PyTorch columns ran on %s, not on the GPU (%s).\n' "$TORCH_DEVICE" "$DEVICE_NAME" >> "$part"
    elif [[ "$SMOKE" != "1" ]] && ! grep -q -E 'to_torch|torch_device' "benchmarks/$module.py"; then
      printf '\n> note: this script does not use `_timing.torch_device()`/`to_torch`: its PyTorch columns may %s\n' \
        "have run on the CPU, not on $TORCH_DEVICE." >> "$part"
    fi
    STATUS+=("| $label | ok | ${took} |")
    echo; cat "$part"; echo "($label: ${took} s; log $LOG_DIR/$label.log)"
  else
    local why="exit $rc"; [[ $rc -eq 124 || $rc -eq 137 ]] && why="timed out (budget)"
    printf '### %s\n\nFAILED (%s) after %s s; last lines:\n\n```\n%s\n```\n' "$label" "$why" "$took" \
      "$(grep -v -E '^[WI][0-9]{4} |Warning|warnings.warn' "$PARTS/$label.log" | tail -n 15)" > "$part"
    STATUS+=("| $label | FAILED: $why | ${took} |")
    echo; cat "$part"; echo "(full log: $LOG_DIR/$label.log)"
  fi
}

run_bench train_step train_step "${COMMON[@]}"
run_bench roofline roofline "${COMMON[@]}" "${PEAK[@]}"
run_bench boxes boxes "${COMMON[@]}"
run_bench losses losses "${COMMON[@]}"
run_bench polygons polygons "${COMMON[@]}"
run_bench yolov8_loss yolov8_loss "${COMMON[@]}"
# YOLO train steps vs ultralytics (eager and torch.compile, interleaved), one run per model so that a spent budget
# skips a model rather than losing all three: 8 x 320 px and 16 x 640 px on the GPU; --cpu-smoke keeps the
# script's --quick case (2 x 64 px).
YOLO_CASES=()
[[ "$SMOKE" != "1" ]] && YOLO_CASES=(--cases 8x320,16x640)
for model in yolov8n yolo11n yolo26n; do
  run_bench "yolo_train_step_$model" yolo_train_step "${COMMON[@]}" --models "$model" "${YOLO_CASES[@]}"
done
if [[ "$TRAIN_LARGE" == "1" ]]; then
  run_bench train_step_large train_step "${COMMON[@]}" --batch-size 256 --image-size 128
fi

TOTAL=$(( $(date +%s) - START ))
{
  echo "# jaxdet benchmarks on ${DEVICE_NAME}"
  echo
  if [[ "$SMOKE" == "1" ]]; then
    echo "CPU smoke test (\`--quick\`: tiny sizes, 3 repeats; OMP_NUM_THREADS=${OMP_NUM_THREADS})" \
      "— not a measurement."
  else
    echo "JAX device: ${DEVICE_NAME}; PyTorch device: ${TORCH_DEVICE}."
    if command -v nvidia-smi > /dev/null 2>&1; then
      echo
      SMI="$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader \
        2>/dev/null | head -n 1)"
      echo "\`nvidia-smi\`: $SMI"
    fi
  fi
  echo
  echo "Written by \`benchmarks/run_gpu.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); total ${TOTAL} s."
  echo
  echo "| benchmark | status | seconds |"
  echo "|---|---|---:|"
  printf '%s\n' "${STATUS[@]}"
  for label in train_step roofline boxes losses polygons yolov8_loss yolo_train_step_yolov8n yolo_train_step_yolo11n \
      yolo_train_step_yolo26n train_step_large; do
    [[ -f "$PARTS/$label.md" ]] || continue
    echo
    cat "$PARTS/$label.md"
  done
} > "$REPORT"

echo
echo "================================================================================"
cat "$REPORT"
echo
echo "wrote $REPORT (${TOTAL} s)"
