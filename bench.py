"""
bench.py: how fast is infini.py? Training steps and streaming inference, measured.

    python bench.py                              # CPU config, every memory mode
    python bench.py --compare=torch              # and PyTorch eager, side by side
                                                 #   (pip install -r requirements-compare.txt first)
    python bench.py --stream                     # streaming: 4K vs 1M tokens, time and memory
    python bench.py --checks                     # the cost of the model's NaN/inf check per step
    python bench.py --config=gpu --device=cuda --compare=torch

A training step is what train.py does: forward, backward, gradient clipping, AdamW. On the
CPU we time it three times: the whole batch in one call (NumPy's BLAS uses every core for
the matmuls, the element-wise work runs on one), the batch split across one thread per core
(speed/parallel.py, BLAS held to one thread each), and the split with speed/fast.py's layer
(the same math, the segments batched); train.py uses the last. Like
train.py, bench.py first asks malloc to keep freed memory for reuse (--malloc=default to
compare without: it changes PyTorch's allocations in this process too). Ours and
PyTorch's take turns (see time_steps) so that both see the same machine load, and we
report the median step.

FLOPs. We count the multiply-adds of the matmuls that the model really computes, times
two, per token of a sequence cut into segments of N (per layer, C = d_model, D = C/H):
    projections q, k, v, o    4 * 2 C^2
    MLP                       2 * 2 C (4C) = 16 C^2
    local attention           2 * 2 N C        (q k^T and p v over full N x N blocks)
    memory, linear            2 * 2 C D        (retrieve sigma(Q) M, update sigma(K)^T V)
    memory, delta             3 * 2 C D        (plus retrieving sigma(K) M)
plus the tied head 2 C V. A training step is 3x the forward (the backward computes two
matmuls for each forward one). Element-wise work (softmax, norms, GELU) is not counted,
so GFLOP/s here understates the work done, as MFU figures usually do.
The matmul peak is measured in the same run: the best of a few large square float32
matmuls on the same device.
"""

import argparse
import sys
import time
import tracemalloc

import numpy as np
from tqdm import tqdm

import infini
from speed import parallel

try:
    from speed import fast  # the labs' student copy leaves it out
except ImportError:
    fast = None

CONFIGS = {  # name -> (model, batch size, sequence length)
    "cpu": (dict(vocab_size=65, n_layer=4, n_head=4, d_model=128, segment_len=64), 12, 256),
    "gpu": (dict(vocab_size=65, n_layer=12, n_head=12, d_model=768, segment_len=512), 8, 4096),
    "train": (dict(vocab_size=65, n_layer=4, n_head=4, d_model=128, segment_len=128), 4, 256),  # train.py's
    "tiny": (dict(vocab_size=65, n_layer=2, n_head=2, d_model=32, segment_len=16), 4, 64),
    "passkey": (dict(vocab_size=45, n_layer=2, n_head=4, d_model=64, segment_len=32), 16, 1344),  # passkey.py's
    # model with segments of 32, as timed on a GPU in docs/speed.md
}


def flops_per_token(cfg, T):
    """Forward FLOPs per token (see the module docstring)."""
    C, D, V, N = cfg.d_model, cfg.head_size, cfg.vocab_size, min(cfg.segment_len, T)
    per_layer = 4 * 2 * C * C + 16 * C * C + 2 * 2 * N * C
    per_layer += {"none": 0, "linear": 2, "delta": 3}[cfg.memory] * 2 * C * D
    return cfg.n_layer * per_layer + 2 * C * V


def sync(xp):
    if xp is not np:
        xp.cuda.Device().synchronize()


def matmul_peak(xp, n=2048, repeats=5):
    """GFLOP/s of the best of a few n x n float32 matmuls."""
    a = xp.asarray(np.random.default_rng(0).normal(size=(n, n)).astype(np.float32))
    best = float("inf")
    for _ in range(repeats):
        sync(xp)
        t = time.perf_counter()
        a @ a
        sync(xp)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def torch_matmul_peak(device, n=2048, repeats=5):
    import torch
    a = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ a
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def our_trainer(cfg, params, xp, threads, attention=infini.PLAIN_ATTENTION):
    """train.py's step. threads > 1: the batch split across threads (speed/parallel.py)."""
    opt = infini.adamw_init(params)

    def step(idx, targets):
        loss, grads = parallel.loss_and_grads(params, idx, targets, cfg, threads=threads, attention=attention)
        infini.clip_grad_norm(grads, 1.0)
        infini.adamw_step(params, grads, opt, lr=1e-3, weight_decay=0.1)
        sync(xp)
        return loss
    return step


def time_steps(steps, batches, warmup, repeats, rounds=3):
    """Median seconds per step of each trainer. -> list of medians.

    The trainers take turns in a few rounds of repeats/rounds steps each, so that all of
    them see the same machine load. Each turn starts with an untimed step and a pause:
    PyTorch's and OpenBLAS's worker threads keep spinning for a while after their last
    call, and on a 2-core machine they would otherwise slow down whoever runs next.
    """
    times = [[] for _ in steps]
    for j, step in enumerate(steps):
        for _ in range(warmup):
            step(*batches[j])
    for _ in range(rounds):
        for j, step in enumerate(steps):
            time.sleep(0.5)
            step(*batches[j])
            for _ in range(max(1, repeats // rounds)):
                t = time.perf_counter()
                step(*batches[j])
                times[j].append(time.perf_counter() - t)
    return [float(np.median(t)) for t in times]


def bench_training(args, xp):
    model, B, T = CONFIGS[args.config]
    B = args.batch_size or B
    print(f"training step (forward, backward, clip, AdamW), config '{args.config}': "
          f"{model}, batch {B}, T {T}, float32, device {args.device}")
    peak = matmul_peak(xp)
    print(f"matmul peak (2048^2 float32, {'CuPy' if xp is not np else 'NumPy'}): {peak:.0f} GFLOP/s")
    if args.compare == "torch":
        import torch
        import torch_infini
        if args.device == "cpu":
            torch.set_num_threads(args.threads)
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
              f"matmul peak {torch_matmul_peak(args.device):.0f} GFLOP/s")
    rows = []
    rng = np.random.default_rng(0)
    data = rng.integers(0, model["vocab_size"], (B, T + 1))
    for memory in args.modes.split(","):
        cfg = infini.Config(memory=memory, **model)
        params = {k: xp.asarray(v) for k, v in infini.init_params(cfg, seed=0).items()}
        idx, targets = xp.asarray(data[:, :-1]), xp.asarray(data[:, 1:])
        steps = [our_trainer(cfg, params, xp, threads=1)]
        if xp is np:
            steps.append(our_trainer(cfg, {k: v.copy() for k, v in params.items()}, xp, args.threads))
            if fast is not None:
                steps.append(our_trainer(cfg, {k: v.copy() for k, v in params.items()}, xp, args.threads,
                                         attention=fast.ATTENTION))
        n_ours = len(steps)
        batches = [(idx, targets)] * len(steps)
        if args.compare == "torch":
            steps.append(torch_infini.make_torch_trainer(
                cfg, infini.init_params(cfg, seed=0), device=args.device, grad_clip=1.0))
            dev = torch.device(args.device)
            batches.append((torch.as_tensor(data[:, :-1], device=dev), torch.as_tensor(data[:, 1:], device=dev)))
        secs = time_steps(steps, batches, args.warmup, args.repeats)
        flops = 3 * flops_per_token(cfg, T) * B * T
        ours = min(secs[:n_ours])                                      # the best of ours is train.py's
        row = {"memory": memory, "plain_tok_s": B * T / secs[0], "ours_tok_s": B * T / ours,
               "ours_gflops": flops / ours / 1e9}
        if xp is np:
            row["threads_tok_s"] = B * T / secs[1]
        if n_ours == 3:
            row["fast_tok_s"] = B * T / secs[2]
        if args.compare == "torch":
            row["torch_tok_s"] = B * T / secs[-1]
        rows.append(row)
        line = f"  {memory:6s}  one batch {row['plain_tok_s']:8,.0f} tok/s"
        if "threads_tok_s" in row:
            line += f"  {args.threads} threads {row['threads_tok_s']:8,.0f} tok/s"
        if "fast_tok_s" in row:
            line += f"  and fast layer {row['fast_tok_s']:8,.0f} tok/s"
        line += f"  best {row['ours_gflops']:5.1f} GFLOP/s ({100 * row['ours_gflops'] / peak:4.1f}% of peak)"
        if "torch_tok_s" in row:
            line += f"  torch {row['torch_tok_s']:8,.0f} tok/s  ours/torch {row['ours_tok_s'] / row['torch_tok_s']:.2f}x"
        print(line, flush=True)
    return rows


def bench_checks(args, xp):
    """The cost of the model's check for NaN/inf parameters (infini.check_finite_output):
    train.py's step with the check, and with it switched off, taking turns."""
    model, B, T = CONFIGS[args.config]
    B = args.batch_size or B
    cfg = infini.Config(memory="delta", **model)
    params = {k: xp.asarray(v) for k, v in infini.init_params(cfg, seed=0).items()}
    data = np.random.default_rng(0).integers(0, model["vocab_size"], (B, T + 1))
    batch = (xp.asarray(data[:, :-1]), xp.asarray(data[:, 1:]))
    checked = our_trainer(cfg, params, xp, args.threads)
    unchecked_step = our_trainer(cfg, {k: v.copy() for k, v in params.items()}, xp, args.threads)
    real = infini.check_finite_output

    def unchecked(idx, targets):
        infini.check_finite_output = lambda out, params: None
        try:
            return unchecked_step(idx, targets)
        finally:
            infini.check_finite_output = real

    on, off = time_steps([checked, unchecked], [batch, batch], args.warmup, args.repeats)
    print(f"training step, config '{args.config}', memory delta: with the NaN/inf check {on * 1e3:.1f} ms, "
          f"without {off * 1e3:.1f} ms: the check costs {100 * (on - off) / off:+.2f}% (medians)")
    return on, off


def bench_streaming(args, xp):
    model, _, _ = CONFIGS[args.config]
    cfg = infini.Config(memory="delta", **model)
    params = {k: xp.asarray(v) for k, v in infini.init_params(cfg, seed=0).items()}
    chunk = cfg.segment_len
    print(f"streaming (batch 1, chunks of {chunk} tokens, memory delta), config '{args.config}'")
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, chunk))
    tokens = xp.asarray(tokens)

    def stream(n, bar=False):
        state = infini.init_state(params, cfg)
        steps = range(n // chunk)
        with parallel.one_blas_thread():     # one chunk's matmuls are too small to share out
            for _ in (tqdm(steps, desc=f"{n:,} tokens", leave=False, mininterval=1.0) if bar else steps):
                _, state = infini.forward_stream(params, tokens, state, cfg)
        sync(xp)
        return state

    stream(3 * chunk)                        # first calls allocate caches of their own: not counted
    results = {}
    for n in sorted({4096, args.stream_tokens}):
        secs = float("inf")                  # speed: the best of three runs for a short input
        for _ in range(3 if n < 100_000 else 1):
            t = time.perf_counter()
            stream(n, bar=True)
            secs = min(secs, time.perf_counter() - t)
        tracemalloc.start()                  # memory: one more run, traced (tracemalloc slows it)
        base = tracemalloc.get_traced_memory()[0]
        state = stream(n)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        results[n] = (n / secs, peak)
        print(f"  {n:>9,} tokens: {n / secs:9,.0f} tok/s, peak host memory {peak / 2**20:6.2f} MiB "
              f"(tracemalloc), memory state {infini.memory_numbers(state):,} numbers", flush=True)
    (r0, m0), (r1, m1) = results[4096], results[max(results)]
    print(f"  {max(results):,} vs 4,096 tokens: speed {r1 / r0:.2f}x, peak memory {m1 / m0:.2f}x")
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="cpu", choices=sorted(CONFIGS))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--modes", default="none,linear,delta")
    ap.add_argument("--compare", default="", choices=["", "torch"])
    ap.add_argument("--batch_size", type=int, default=0, help="override the config's batch size")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=parallel.default_threads(),
                    help="CPU threads: for our batch split (speed/parallel.py) and for torch")
    ap.add_argument("--malloc", default="keep", choices=["keep", "default"],
                    help="keep: freed memory is reused (speed/parallel.py keep_freed_memory, "
                         "as train.py does); default: glibc's own settings. Applies to torch too")
    ap.add_argument("--stream", action="store_true", help="measure streaming inference instead")
    ap.add_argument("--checks", action="store_true",
                    help="measure the cost of the model's NaN/inf check on a training step instead")
    ap.add_argument("--stream_tokens", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    for m in args.modes.split(","):
        if m not in infini.MEMORY_MODES:
            ap.error(f"unknown memory mode {m!r} in --modes")
    try:
        xp = infini.backend(args.device)
    except ValueError as e:  # --device=cuda without CuPy or a GPU
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.compare == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            print("error: --compare=torch needs PyTorch, which the project itself does not: "
                  "pip install -r requirements-compare.txt", file=sys.stderr)
            return 2
    if args.malloc == "keep":
        print(f"malloc: freed memory kept for reuse: {parallel.keep_freed_memory()}")
    if args.checks:
        bench_checks(args, xp)
    elif args.stream:
        bench_streaming(args, xp)
    else:
        bench_training(args, xp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
