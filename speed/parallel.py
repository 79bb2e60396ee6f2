"""
speed/parallel.py: data-parallel training steps across the cores of a CPU.

NumPy runs element-wise work (softmax, GELU, norms, the memory's feature map) on one
core; only BLAS, for the matmuls, uses several. On a 2-core machine that leaves a core
idle for about half of every training step. Here the batch is cut into one slice per
thread (fewer when the batch has fewer examples than there are threads: no slice is
empty), each slice runs infini.loss_and_grads in its own thread (NumPy releases the GIL
inside its loops, so the threads really run at once), and BLAS is held to one thread
meanwhile, so that the two levels of threads do not fight over the cores. It also keeps
training fast when other programs use some of the cores: BLAS threads that wait for a
busy core spin.

The math is unchanged: the loss is the mean over all targets != -1, so each slice's mean
loss and gradients are weighted by its share of those targets. The sums run in a fixed
order, so results are deterministic for a given number of threads (they differ from the
unsliced computation by float rounding only). CuPy arrays go straight to infini: a GPU
needs no help from CPU threads.

    loss, grads = parallel.loss_and_grads(params, idx, targets, cfg, threads=2)

keep_freed_memory() is the other CPU fix here: a training step makes hundreds of large
temporaries (megabytes each), and by default glibc hands each one back to the operating
system when it is freed, so the next one starts on fresh pages that the kernel must fault
in and zero. Keeping freed memory in the process for reuse makes a step markedly faster
(bench.py prints its effect) for the price of a resident size that stays at its peak.
"""

import ctypes
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import infini

_pools = {}
_blas = None


def _pool(threads):
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="infini")
    return _pools[threads]


def one_blas_thread():
    """A context manager that holds BLAS to one thread (threadpoolctl), if it is installed."""
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas = ThreadpoolController()
        except ImportError:
            _blas = False
    if _blas is False:
        import contextlib
        return contextlib.nullcontext()
    return _blas.limit(limits=1, user_api="blas")


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for reuse (Linux only). -> True if it did.

    Blocks up to 32 MiB (glibc's largest setting) come from the heap instead of their own
    mmap, and the heap is not trimmed below 1 GiB of free space. The same as starting
    Python with MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824. It changes
    the process (NumPy, and PyTorch in the same process, alike), so scripts call it, not
    the library.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt                                # absent from musl
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3                            # from <malloc.h>
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


def default_threads():
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _slices(targets, threads):
    """The batch cut into one slice per thread, slices with no target left out.
    -> slices, their target counts, the total count; or None to run the batch whole."""
    threads = threads or default_threads()
    B = targets.shape[0]
    if threads <= 1 or B < 2 or infini.get_array_module(targets) is not infini.np:
        return None
    n = min(threads, B)                                        # every slice holds one example or more
    bounds = [(B * i) // n for i in range(n + 1)]
    slices = [slice(a, b) for a, b in zip(bounds, bounds[1:])]
    counts = [int((targets[s] != -1).sum()) for s in slices]
    total = sum(counts)
    if total == 0:
        raise ValueError("targets are all -1: there is nothing to compute a loss on")
    kept = [(s, n) for s, n in zip(slices, counts) if n > 0]  # a slice with no targets adds nothing
    return [s for s, _ in kept], [n for _, n in kept], total


def _map(run, slices):
    with one_blas_thread():
        return list(_pool(len(slices)).map(run, slices))


def loss_and_grads(params, idx, targets, cfg, threads=None, attention=infini.PLAIN_ATTENTION):
    """infini.loss_and_grads, with the batch split across threads (CPU arrays only)."""
    split = _slices(targets, threads)
    if split is None:
        return infini.loss_and_grads(params, idx, targets, cfg, attention=attention)
    slices, counts, total = split
    results = _map(lambda s: infini.loss_and_grads(params, idx[s], targets[s], cfg, attention=attention), slices)
    loss = sum(n / total * r[0] for n, r in zip(counts, results))
    grads = results[0][1]
    w0 = counts[0] / total
    for g in grads.values():
        g *= w0
    for n, (_, g_i) in zip(counts[1:], results[1:]):
        for name, g in grads.items():
            g += (n / total) * g_i[name]
    return loss, grads


def loss(params, idx, targets, cfg, threads=None, attention=infini.PLAIN_ATTENTION):
    """The mean cross-entropy over targets != -1, no gradients: an evaluation, split the same way."""
    def one(idx, targets):
        logits = infini.forward(params, idx, cfg, attention)
        return float(infini.cross_entropy_forward(logits, targets)[0])
    split = _slices(targets, threads)
    if split is None:
        return one(idx, targets)
    slices, counts, total = split
    losses = _map(lambda s: one(idx[s], targets[s]), slices)
    return sum(n / total * l for n, l in zip(counts, losses))
