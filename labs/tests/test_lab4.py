"""Lab 4: the delta rule (Eq. 9), the gate (Eq. 10), one segment's backward, and
back-propagation through time over the segments (labs/lab4_delta_bptt.md).

Lab 4 builds on labs 1-3: the segment and the layer call their functions.

    python -m pytest labs/tests/test_lab4.py
"""
import numpy as np
import pytest

import infini
from labcheck import builds_on, check_close, check_gradients, randn

EARLIER = [1, 2, 3]


def delta_update(sk, v, M, z):
    return infini.memory_update_forward(sk, v, M, z, "delta")


def random_memory(seed):
    sk, v = np.exp(randn(2, 2, 5, 4, seed=seed)), randn(2, 2, 5, 4, seed=seed + 1)
    M, z = randn(2, 2, 4, 4, seed=seed + 2), np.exp(randn(2, 2, 4, seed=seed + 3))
    return sk, v, M, z


@builds_on(4, EARLIER)
def test_delta_update_known_values():
    sk, v, M, z = random_memory(1)
    (M1, z1), _ = delta_update(sk, v, M, z)
    v_old = sk[1, 0] @ M[1, 0] / (sk[1, 0] @ z[1, 0] + infini.EPS_MEM)[:, None]   # (n,D), by hand
    check_close("memory_update_forward (delta)", "M' of batch 1, head 0 (want M + sk^T (v - v_old))",
                M1[1, 0], M[1, 0] + sk[1, 0].T @ (v[1, 0] - v_old))
    check_close("memory_update_forward (delta)", "z' (want z + sum over tokens of sk)", z1, z + sk.sum(axis=2))


@builds_on(4, EARLIER)
def test_delta_update_adds_only_what_is_new():
    # into an empty memory the delta rule writes what the linear rule writes...
    sk, v = np.exp(randn(1, 1, 1, 6, seed=5)), randn(1, 1, 1, 6, seed=6)
    empty = (np.zeros((1, 1, 6, 6)), np.zeros((1, 1, 6)))
    (M1, z1), _ = delta_update(sk, v, *empty)
    (L1, _), _ = infini.memory_update_forward(sk, v, *empty, "linear")
    check_close("memory_update_forward (delta)", "M' from an empty memory (want the linear rule's M')", M1, L1)
    # ...but the same pair written again adds (almost) nothing: M already returns v for that key
    (M2, _), _ = delta_update(sk, v, M1, z1)
    change = np.abs(M2 - M1).max() / np.abs(M1).max()
    assert change < 1e-5, f"memory_update_forward (delta): writing a stored pair again changed M by {change:.1e}"


@builds_on(4, EARLIER)
def test_delta_update_backward_finite_differences():
    check_gradients("memory_update_backward (delta)", delta_update, infini.memory_update_backward,
                    list(random_memory(7)), ["dsk", "dv", "dM", "dz"])


def test_gate_known_values():
    a_mem, a_dot = randn(1, 3, 2, 4, seed=1), randn(1, 3, 2, 4, seed=2)
    out, _ = infini.gate_forward(a_mem, a_dot, np.array([0.0, 40.0, -40.0]))
    check_close("gate_forward", "head 0, beta = 0 (want the mean of A_mem and A_dot)", out[:, 0],
                0.5 * (a_mem[:, 0] + a_dot[:, 0]))
    check_close("gate_forward", "head 1, beta = 40 (want A_mem)", out[:, 1], a_mem[:, 1])
    check_close("gate_forward", "head 2, beta = -40 (want A_dot)", out[:, 2], a_dot[:, 2])


def test_gate_backward_finite_differences():
    check_gradients("gate_backward", infini.gate_forward, infini.gate_backward,
                    [randn(2, 3, 5, 4, seed=1), randn(2, 3, 5, 4, seed=2), randn(3, seed=3)],
                    ["da_mem", "da_dot", "dbeta"])


@pytest.mark.parametrize("memory", ["none", "linear", "delta"])
@builds_on(4, EARLIER)
def test_infini_segment_backward_finite_differences(memory):
    """One recurrent step, with the gradients that arrive through M_next and z_next."""
    B, H, n, D = 2, 2, 5, 4
    Q, K, V = randn(B, H, n, D, seed=1), randn(B, H, n, D, seed=2), randn(B, H, n, D, seed=3)
    M, z, beta = randn(B, H, D, D, seed=4), np.exp(randn(B, H, D, seed=5)), randn(H, seed=6)
    name = f"infini_segment_backward (memory={memory})"
    if memory == "none":
        def fwd(Q, K, V):
            A, _, _, cache = infini.infini_segment_forward(Q, K, V, None, None, None, "none")
            return A, cache

        def bwd(dA, cache):
            return infini.infini_segment_backward(dA, None, None, cache)[:3]

        check_gradients(name, fwd, bwd, [Q, K, V], ["dQ", "dK", "dV"])
        return

    def fwd(Q, K, V, M, z, beta):
        A, M2, z2, cache = infini.infini_segment_forward(Q, K, V, M, z, beta, memory)
        return (A, M2, z2), cache

    check_gradients(name, fwd, infini.infini_segment_backward, [Q, K, V, M, z, beta],
                    ["dQ", "dK", "dV", "dM", "dz", "dbeta"])


def layer(memory, bptt_segments=0):
    cfg = infini.Config(vocab_size=11, n_layer=1, n_head=2, d_model=8, segment_len=4, memory=memory,
                        bptt_segments=bptt_segments)
    rng = np.random.default_rng(0)
    p = {f"h.0.{w}": rng.normal(0.0, 0.5, (8, 8)) for w in ("wq", "wk", "wv", "wo")}
    if memory != "none":
        p["h.0.beta"] = rng.normal(0.0, 1.0, 2)
    return cfg, p


@pytest.mark.parametrize("memory", ["none", "linear", "delta"])
@builds_on(4, EARLIER)
def test_attention_backward_through_three_segments(memory):
    """The whole layer, T = 10 tokens in segments of 4, 4 and 2: the gradient of the first
    segment's tokens arrives through the memory of the later ones (BPTT)."""
    cfg, p = layer(memory)
    h = randn(1, 10, 8, seed=1)
    names = ["h.0.wq", "h.0.wk", "h.0.wv", "h.0.wo"] + (["h.0.beta"] if memory != "none" else [])

    def fwd(h, *ws):
        return infini.attention_forward(h, dict(zip(names, ws)), 0, cfg)

    def bwd(dout, cache):
        grads = infini.attention_backward(dout, cache, cfg)
        return grads if memory != "none" else grads[:5]

    check_gradients(f"attention_backward (memory={memory})", fwd, bwd, [h] + [p[k] for k in names],
                    ["dh", "dwq", "dwk", "dwv", "dwo", "dbeta"][:1 + len(names)])


@pytest.mark.parametrize("memory", ["linear", "delta"])
@builds_on(4, EARLIER)
def test_attention_backward_truncated_bptt(memory):
    """bptt_segments = k stops the gradient through the memory entering segments s with s % k == 0:
    a loss on the last of 4 segments then reaches only the segments after the last cut."""
    h = randn(2, 16, 8, seed=3)
    dout = np.zeros((2, 16, 8))
    dout[:, 12:] = randn(2, 4, 8, seed=4)                                 # gradient from segment 3 only
    reach = {}
    for k in (0, 1, 2):
        cfg, p = layer(memory, bptt_segments=k)
        _, cache = infini.attention_forward(h, p, 0, cfg)
        dh = infini.attention_backward(dout, cache, cfg)[0]
        reach[k] = [bool(np.abs(dh[:, 4 * s:4 * s + 4]).max() > 0) for s in range(4)]
    assert reach[0] == [True] * 4, f"attention_backward: full BPTT must reach every segment, reached {reach[0]}"
    assert reach[1] == [False, False, False, True], \
        f"attention_backward: with bptt_segments=1 only the last segment gets a gradient, got {reach[1]}"
    assert reach[2] == [False, False, True, True], \
        f"attention_backward: with bptt_segments=2 segments 2 and 3 get a gradient, got {reach[2]}"
