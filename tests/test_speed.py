"""speed/: the fast layer against the plain one in infini.py and finite differences;
the data-parallel threads against one batch."""

import platform

import numpy as np
import pytest

import infini
from speed import fast
from test_infini import numerical_grad, random_params, rel_error


@pytest.mark.parametrize("memory", ["none", "linear", "delta"])
@pytest.mark.parametrize("T, bptt", [(12, 0), (10, 0), (3, 0), (17, 2), (16, 1)])
def test_fast_attention_equals_plain(memory, T, bptt):
    cfg = infini.Config(vocab_size=11, n_layer=2, n_head=2, d_model=8, segment_len=4,
                        memory=memory, bptt_segments=bptt)
    params = random_params(cfg)
    rng = np.random.default_rng(T)
    idx, targets = rng.integers(0, 11, (3, T)), rng.integers(0, 11, (3, T))
    targets[1, 0] = -1
    logits = infini.forward(params, idx, cfg)
    assert np.abs(infini.forward(params, idx, cfg, attention=fast.ATTENTION) - logits).max() <= 1e-12
    loss, grads = infini.loss_and_grads(params, idx, targets, cfg)
    loss_f, grads_f = fast.loss_and_grads(params, idx, targets, cfg)
    assert abs(loss - loss_f) <= 1e-12
    for name in grads:
        assert rel_error(grads[name], grads_f[name]) <= 1e-12, f"{name}: {rel_error(grads[name], grads_f[name]):.1e}"


@pytest.mark.parametrize("memory", ["linear", "delta"])
def test_fast_attention_finite_differences(memory):
    """The fast backward on its own against centred differences: every attention weight."""
    cfg = infini.Config(vocab_size=11, n_layer=1, n_head=2, d_model=8, segment_len=4, memory=memory)
    params = random_params(cfg, seed=3)
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 11, (2, 11)), rng.integers(0, 11, (2, 11))
    _, grads = fast.loss_and_grads(params, idx, targets, cfg)

    def f():
        logits, _ = infini.model_forward(params, idx, cfg, attention=fast.ATTENTION)
        return float(infini.cross_entropy_forward(logits, targets)[0])

    for name in ("h.0.wq", "h.0.wk", "h.0.wv", "h.0.wo", "h.0.beta"):
        err = rel_error(numerical_grad(f, params[name]), grads[name])
        assert err <= 1e-7, f"{name}: rel_error {err:.2e}"


def test_fast_attention_float32():
    cfg = infini.Config(vocab_size=65, n_layer=2, n_head=4, d_model=64, segment_len=16, memory="delta")
    params = infini.init_params(cfg, seed=0)
    idx = np.random.default_rng(0).integers(0, 65, (2, 40))
    loss, grads = infini.loss_and_grads(params, idx[:, :-1], idx[:, 1:], cfg)
    loss_f, grads_f = fast.loss_and_grads(params, idx[:, :-1], idx[:, 1:], cfg)
    assert abs(loss - loss_f) <= 1e-5
    assert all(g.dtype == np.float32 for g in grads_f.values())
    assert max(rel_error(grads[k], grads_f[k]) for k in grads) <= 1e-4


@pytest.mark.parametrize("threads", [2, 3, 5, 16])
def test_parallel_slices_equal_one_batch(threads):
    """speed/parallel.py: the batch in slices across threads, the same loss and gradients
    (also with as many threads as examples, or more: a machine with more cores than the batch)."""
    from speed import parallel
    cfg = infini.Config(vocab_size=11, n_layer=2, n_head=2, d_model=8, segment_len=4, memory="delta")
    params = random_params(cfg)
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 11, (5, 10)), rng.integers(0, 11, (5, 10))
    targets[0, :7] = -1                      # slices hold different numbers of targets
    targets[4, :] = -1                       # and the last one may hold none at all
    loss, grads = infini.loss_and_grads(params, idx, targets, cfg)
    loss_p, grads_p = parallel.loss_and_grads(params, idx, targets, cfg, threads=threads)
    assert abs(loss - loss_p) <= 1e-12
    for name in grads:
        assert rel_error(grads[name], grads_p[name]) <= 1e-12, name
    assert abs(parallel.loss(params, idx, targets, cfg, threads=threads) - loss) <= 1e-12  # train.py's evaluation


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_on_glibc():
    """train.py's malloc setting takes (on glibc), and results do not depend on it."""
    from speed import parallel
    cfg = infini.Config(vocab_size=11, n_layer=1, n_head=2, d_model=8, segment_len=4, memory="delta")
    params = infini.init_params(cfg, seed=0)
    idx = np.random.default_rng(0).integers(0, 11, size=(2, 9))
    before = infini.loss_and_grads(params, idx, idx, cfg)
    assert parallel.keep_freed_memory() is True
    after = infini.loss_and_grads(params, idx, idx, cfg)
    assert before[0] == after[0] and all(np.array_equal(before[1][k], after[1][k]) for k in params)
