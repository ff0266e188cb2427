#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main MLflow pipeline on the embedded defaults
# (scikit-learn's digits, device-dependent batch sizes, precisions, runtimes and variants).
# Extra arguments go to `mlflow run`, e.g. -P model=resnet18 -P image_size=32.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
mlflow run . --env-manager local "$@"
