#!/usr/bin/env bash
# Re-run the commands of docs/howto.md in a scratch folder and keep their console output there, so the page can be
# refreshed with numbers from a quiet machine: bash scripts/howto_capture.sh [FOLDER] (default: a new temp folder).
# Takes about 10 minutes on a 2-core CPU (resnet18 at 32 px; the baseline fine-tuning is cached after the first run).
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$(mktemp -d)}"
mkdir -p "$out" && cd "$out"
export COLUMNS=160 PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
capture() {  # capture NAME COMMAND...: NAME.out (stdout), NAME.err (stderr), NAME.rc (exit code)
  local name="$1"; shift
  "$@" > "$name.out" 2> "$name.err"; echo $? > "$name.rc"
}
capture variants mlperf-track run --model resnet18 --variants quantized,pruned --image-size 32
capture memory mlperf-track tune --model resnet18 --image-size 32 --memory-limit-mb 1500 --n-trials 12
capture before mlperf-track bench --model resnet18 --image-size 32 --runtimes eager --batch-sizes 8 --num-threads 1 --output-dir before
capture after mlperf-track bench --model resnet34 --image-size 32 --runtimes eager --batch-sizes 8 --num-threads 1 --output-dir after
capture compare mlperf-track compare --baseline before/baseline-eager-fp32-bs8/samples.csv \
  --candidate after/baseline-eager-fp32-bs8/samples.csv --fail-on p50:5%
echo "outputs in $out: variants, memory, before, after, compare (.out, .err, .rc)"
