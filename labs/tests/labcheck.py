"""Helpers of the lab checks: centred finite differences in float64 and readable failures.

Nothing here is a solution: every check calls the functions of infini.py and compares
them with numbers computed from their own forward pass (finite differences) or by hand.
"""
import numpy as np
import pytest

from gradcheck import numerical_grad, randn, rel_error  # tests/gradcheck.py

TOL = 1e-7  # float64 finite differences with h = 1e-5 reach ~1e-9 on these small inputs


def as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def check_gradients(name, forward, backward, inputs, grad_names, tol=TOL, seed=0):
    """Checks backward(*douts, cache) against finite differences of sum(forward(*inputs) * dout).

    name: the backward's name for messages; grad_names: one name per input ("dx", "dg", ...),
    None for an input without a gradient. forward returns (out, cache) or ((out1, out2), cache).
    """
    rng = np.random.default_rng(seed)
    out, cache = forward(*inputs)
    outs = as_tuple(out)
    douts = [rng.normal(size=o.shape) for o in outs]
    grads = as_tuple(backward(*douts, cache))
    if len(grads) != len(grad_names):
        pytest.fail(f"{name}: returned {len(grads)} value(s), want {len(grad_names)} "
                    f"({', '.join(str(g) for g in grad_names)})")

    def f():
        o = as_tuple(forward(*inputs)[0])
        return sum(float((oi * di).sum()) for oi, di in zip(o, douts))

    for x, g, gname in zip(inputs, grads, grad_names):
        if gname is None:
            continue
        if g is None or np.shape(g) != np.shape(x):
            pytest.fail(f"{name}: {gname} has shape {np.shape(g) if g is not None else None}, "
                        f"want {np.shape(x)} (the shape of its input)")
        if np.asarray(g).dtype != np.float64:
            pytest.fail(f"{name}: {gname} has dtype {np.asarray(g).dtype}, want float64 like the inputs")
        err = rel_error(numerical_grad(f, x), g)
        assert err < tol, f"{name}: {gname} has rel_error {err:.1e} (want < {tol:.0e})"


def check_close(name, what, got, want, tol=1e-10):
    """A known-value check: max |got - want| below tol * max(1, max |want|), with a message."""
    got, want = np.asarray(got), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        pytest.fail(f"{name}: {what} has shape {got.shape}, want {want.shape}")
    if not np.isfinite(got).all():
        pytest.fail(f"{name}: {what} holds inf or nan")
    err = float(np.abs(got - want).max(initial=0.0)) / max(1.0, float(np.abs(want).max(initial=0.0)))
    assert err < tol, f"{name}: {what} is off by {err:.1e} (want < {tol:.0e})"


def builds_on(lab, earlier):
    """Decorates a check of lab `lab` that runs code of earlier labs: if one of them is not
    written yet, the check fails with 'Lab <lab> builds on labs ...: <their message>'."""
    import functools

    def wrap(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            try:
                return test(*args, **kwargs)
            except NotImplementedError as e:
                if str(e).startswith(f"Lab {lab}:"):
                    raise
                message = str(e)
            pytest.fail(f"Lab {lab} builds on labs {', '.join(map(str, earlier))}; finish them first: {message}",
                        pytrace=False)
        return run
    return wrap
