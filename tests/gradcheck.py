"""Gradient-check helpers shared by the test suite and the lab checks (labs/tests)."""

import numpy as np


def rel_error(a, b):
    """||a - b|| / (||a|| + ||b||): 0 when equal, 1 when unrelated."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def numerical_grad(f, x, h=1e-5):
    """Centred finite differences of the scalar f() with respect to every entry of x (in place)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
    return grad


def randn(*shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(0.0, scale, shape)
