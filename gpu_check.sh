#!/usr/bin/env bash
# Every GPU check in one run (a machine with an NVIDIA GPU, CuPy and, for the comparison,
# PyTorch): the test suite on both backends, then training-step speed against PyTorch CUDA
# eager on a GPU-sized model, then streaming. Logs go to $OUT (default ./gpu-check).
#   bash gpu_check.sh
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python -c "import cupy; print('cupy', cupy.__version__, cupy.cuda.runtime.getDeviceCount(), 'GPU(s)')" 2>&1 | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee -a "$OUT/env.txt"
python -m pytest -q tests/test_backends.py tests/test_infini.py tests/test_kernels.py 2>&1 | tee "$OUT/tests.txt"
python bench.py --config=gpu --device=cuda --compare=torch --repeats=6 2>&1 | tee "$OUT/bench_gpu.txt"
python bench.py --config=cpu --device=cuda --compare=torch --repeats=6 2>&1 | tee "$OUT/bench_gpu_small.txt"
python bench.py --config=cpu --device=cuda --stream --stream_tokens=262144 2>&1 | tee "$OUT/stream_gpu.txt"
python train.py config/train_shakespeare_char_gpu.py --max_iters=50 --eval_interval=25 --out_dir="$OUT/train" 2>&1 | tail -5 | tee "$OUT/train.txt"
