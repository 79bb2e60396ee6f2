"""Lab 2: causal_attention_forward/backward (Eq. 5-6) and rope_backward (labs/lab2_attention_rope.md).

    python -m pytest labs/tests/test_lab2.py
"""
import math

import numpy as np

import infini
from labcheck import check_close, check_gradients, randn


def test_causal_attention_known_values():
    # q = 0: every score is 0, so position i averages v over positions 0..i
    B, H, n, D = 1, 2, 5, 4
    q, k, v = np.zeros((B, H, n, D)), randn(B, H, n, D, seed=1), randn(B, H, n, D, seed=2)
    out, _ = infini.causal_attention_forward(q, k, v)
    want = np.cumsum(v, axis=2) / np.arange(1, n + 1)[None, None, :, None]
    check_close("causal_attention_forward", "output for q = 0 (want the running mean of v)", out, want)


def test_causal_attention_scale_and_softmax():
    # one query, two keys: weights softmax([q.k0, q.k1] / sqrt(D)), by hand
    D = 4
    q = np.array([[[[1.0, 2.0, 0.0, -1.0]]]])                         # position 1 (q_start = 1)
    k = np.array([[[[0.5, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 1.0]]]])
    v = np.array([[[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]]])
    out, _ = infini.causal_attention_forward(q, k, v, q_start=1)
    s = np.array([0.5, 2.0]) / math.sqrt(D)
    w = np.exp(s) / np.exp(s).sum()
    check_close("causal_attention_forward", "output (want softmax(q k^T / sqrt(D)) v)", out[0, 0, 0, :2], w)


def test_causal_attention_is_causal():
    q, k, v = randn(1, 2, 6, 4, seed=1), randn(1, 2, 6, 4, seed=2), randn(1, 2, 6, 4, seed=3)
    base, _ = infini.causal_attention_forward(q, k, v)
    k2, v2 = k.copy(), v.copy()
    k2[:, :, 3:] += 5.0
    v2[:, :, 3:] -= 5.0
    out, _ = infini.causal_attention_forward(q, k2, v2)
    assert np.array_equal(out[:, :, :3], base[:, :, :3]), \
        "causal_attention_forward: changing keys/values at positions >= 3 changed the outputs before 3"
    assert np.isfinite(base).all(), "causal_attention_forward: the output has inf or nan (masking with -inf?)"


def test_causal_attention_q_start():
    # streaming: queries at positions q_start.. see the keys up to their own position
    q, k, v = randn(1, 2, 5, 4, seed=1), randn(1, 2, 5, 4, seed=2), randn(1, 2, 5, 4, seed=3)
    full, _ = infini.causal_attention_forward(q, k, v)
    part, _ = infini.causal_attention_forward(q[:, :, 3:], k, v, q_start=3)
    check_close("causal_attention_forward", "rows 3, 4 computed with q_start = 3", part, full[:, :, 3:])


def test_causal_attention_backward_finite_differences():
    q, k, v = randn(2, 2, 5, 4, seed=1), randn(2, 2, 5, 4, seed=2), randn(2, 2, 5, 4, seed=3)
    check_gradients("causal_attention_backward", infini.causal_attention_forward,
                    infini.causal_attention_backward, [q, k, v], ["dq", "dk", "dv"])


def test_causal_attention_backward_with_q_start():
    q, k, v = randn(1, 2, 2, 4, seed=4), randn(1, 2, 5, 4, seed=5), randn(1, 2, 5, 4, seed=6)
    fwd = lambda q, k, v: infini.causal_attention_forward(q, k, v, q_start=3)  # noqa: E731
    check_gradients("causal_attention_backward (q_start = 3, 2 queries, 5 keys)", fwd,
                    infini.causal_attention_backward, [q, k, v], ["dq", "dk", "dv"])


def test_rope_backward_finite_differences():
    pos = np.arange(5)
    fwd = lambda x: infini.rope_forward(x, pos)  # noqa: E731
    check_gradients("rope_backward", fwd, infini.rope_backward, [randn(2, 2, 5, 6, seed=1)], ["dx"])


def test_rope_backward_undoes_the_rotation():
    x = randn(1, 3, 7, 8, seed=2)
    out, cache = infini.rope_forward(x, np.arange(10, 17))
    check_close("rope_backward", "rope_backward(rope_forward(x)) (want x: a rotation's transpose is its inverse)",
                infini.rope_backward(out, cache), x)
