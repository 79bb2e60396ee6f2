"""Lab 1: rmsnorm_backward, matmul_backward, gelu_backward (labs/lab1_norm_matmul_gelu.md).

    python -m pytest labs/tests/test_lab1.py
"""
import math

import numpy as np

import infini
from labcheck import check_close, check_gradients, randn


def test_rmsnorm_backward_finite_differences():
    x, g = randn(2, 3, 8, seed=1), randn(8, seed=2)
    check_gradients("rmsnorm_backward", infini.rmsnorm_forward, infini.rmsnorm_backward, [x, g], ["dx", "dg"])


def test_rmsnorm_backward_known_values():
    # g = 1 and a row x = c * ones (c large, so eps is negligible): xhat = ones, and a uniform
    # dout only scales the row, which rmsnorm undoes (dx = 0); dg sums dout * xhat over rows
    x = np.full((2, 1, 4), 1000.0)
    out, cache = infini.rmsnorm_forward(x, np.ones(4))
    dx, dg = infini.rmsnorm_backward(np.ones_like(out), cache)
    check_close("rmsnorm_backward", "dx for a constant row and a uniform dout (want 0)", dx, np.zeros_like(x))
    check_close("rmsnorm_backward", "dg (want sum over rows of dout * xhat = 2 per entry)", dg, np.full(4, 2.0))


def test_matmul_backward_finite_differences():
    x, w = randn(2, 3, 5, seed=1), randn(5, 4, seed=2)
    check_gradients("matmul_backward", infini.matmul_forward, infini.matmul_backward, [x, w], ["dx", "dw"])


def test_matmul_backward_known_values():
    x = np.arange(6.0).reshape(1, 3, 2)           # three rows (0,1), (2,3), (4,5)
    w = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    _, cache = infini.matmul_forward(x, w)
    dx, dw = infini.matmul_backward(np.ones((1, 3, 3)), cache)
    check_close("matmul_backward", "dx (want each row = row sums of w: 6, 15)", dx, np.tile([6.0, 15.0], (1, 3, 1)))
    check_close("matmul_backward", "dw (want column sums of x: 6, 9 in every column)", dw,
                np.array([[6.0] * 3, [9.0] * 3]))


def test_gelu_backward_finite_differences():
    x = randn(2, 3, 7, seed=1, scale=2.0)
    check_gradients("gelu_backward", infini.gelu_forward, infini.gelu_backward, [x], ["dx"])


def test_gelu_backward_known_values():
    x = np.array([0.0, 30.0, -30.0])
    _, cache = infini.gelu_forward(x.copy())
    dx = infini.gelu_backward(np.ones(3), cache)
    # slope 1/2 at 0; far out gelu is x (slope 1) on the right and 0 on the left
    check_close("gelu_backward", "dx at x = 0, +30, -30 (want 0.5, 1, 0)", dx, np.array([0.5, 1.0, 0.0]), tol=1e-12)
    # the backward does not change the forward's cache (it may be used twice)
    x = randn(5, seed=3)
    _, cache = infini.gelu_forward(x.copy())
    saved = [np.copy(c) for c in cache]
    infini.gelu_backward(np.ones(5), cache)
    infini.gelu_backward(np.ones(5), cache)
    for c, s in zip(cache, saved):
        assert np.array_equal(c, s), "gelu_backward: it changed the cache in place (the forward's arrays)"
    assert math.isfinite(float(infini.gelu_backward(np.ones(5), cache).sum()))
