"""Lab 3: the memory, linear rule: sigma (elu + 1), retrieval (Eq. 7), linear update (Eq. 8)
(labs/lab3_memory_linear.md). Every check calls the lab's functions directly.

    python -m pytest labs/tests/test_lab3.py
"""
import math

import numpy as np

import infini
from labcheck import check_close, check_gradients, randn


def test_sigma_forward_known_values():
    x = np.array([-1000.0, -1.0, 0.0, 1.0, 1000.0])
    out, _ = infini.sigma_forward(x)
    check_close("sigma_forward", "elu(x) + 1 at -1000, -1, 0, 1, 1000", out,
                np.array([0.0, math.exp(-1.0), 1.0, 2.0, 1001.0]), tol=1e-12)
    assert np.all(infini.sigma_forward(randn(50, seed=1, scale=3.0))[0] > 0), "sigma_forward: must be > 0"


def test_sigma_backward_finite_differences():
    # elu + 1 has a kink in its second derivative at 0; random points avoid it
    check_gradients("sigma_backward", infini.sigma_forward, infini.sigma_backward,
                    [randn(2, 2, 5, 4, seed=1)], ["dx"])


def test_sigma_backward_far_out():
    x = np.array([-1000.0, 1000.0])
    _, cache = infini.sigma_forward(x)
    check_close("sigma_backward", "slope at -1000 and 1000 (want 0 and 1)", infini.sigma_backward(np.ones(2), cache),
                np.array([0.0, 1.0]))


def memory(seed):
    sq = np.exp(randn(2, 2, 5, 4, seed=seed))            # sigma(.) > 0
    M, z = randn(2, 2, 4, 4, seed=seed + 1), np.exp(randn(2, 2, 4, seed=seed + 2))
    return sq, M, z


def test_memory_retrieve_forward_known_values():
    sq, M, z = memory(1)
    out, _ = infini.memory_retrieve_forward(sq, M, z)
    # one query, by hand: (sq[0] @ M) / (sq[0] . z + eps)
    want = sq[1, 0, 2] @ M[1, 0] / (sq[1, 0, 2] @ z[1, 0] + infini.EPS_MEM)
    check_close("memory_retrieve_forward", "A_mem of batch 1, head 0, token 2", out[1, 0, 2], want)


def test_memory_retrieve_from_an_empty_memory_is_zero():
    # the first segment: M = 0 and z = 0, and eps makes 0 / 0 an exact 0
    sq = np.exp(randn(1, 2, 3, 4, seed=2))
    out, _ = infini.memory_retrieve_forward(sq, np.zeros((1, 2, 4, 4)), np.zeros((1, 2, 4)))
    check_close("memory_retrieve_forward", "A_mem of an empty memory (want 0, no nan)", out, np.zeros_like(sq))


def test_memory_retrieve_backward_finite_differences():
    check_gradients("memory_retrieve_backward", infini.memory_retrieve_forward, infini.memory_retrieve_backward,
                    list(memory(3)), ["dsq", "dM", "dz"])


def linear_update(sk, v, M, z):
    return infini.memory_update_forward(sk, v, M, z, "linear")


def test_memory_update_linear_known_values():
    sk, v = np.exp(randn(2, 2, 5, 4, seed=1)), randn(2, 2, 5, 4, seed=2)
    M, z = randn(2, 2, 4, 4, seed=3), np.exp(randn(2, 2, 4, seed=4))
    (M1, z1), _ = linear_update(sk, v, M, z)
    want_M = M[0, 1] + sum(np.outer(sk[0, 1, i], v[0, 1, i]) for i in range(5))
    check_close("memory_update_forward (linear)", "M' of batch 0, head 1 (want M + sum_i outer(sk_i, v_i))",
                M1[0, 1], want_M)
    check_close("memory_update_forward (linear)", "z' (want z + sum over tokens of sk)", z1, z + sk.sum(axis=2))
    # writing the same segment twice adds it twice
    (M2, _), _ = linear_update(sk, v, M1, z1)
    check_close("memory_update_forward (linear)", "M'' - M' after writing a segment twice (want M' - M)",
                M2 - M1, M1 - M)


def test_a_stored_pair_is_retrieved():
    # Eq. 8 then Eq. 7: one key-value pair written to an empty memory is read back with its key
    sk, v = np.exp(randn(1, 1, 1, 6, seed=5)), randn(1, 1, 1, 6, seed=6)
    (M, z), _ = linear_update(sk, v, np.zeros((1, 1, 6, 6)), np.zeros((1, 1, 6)))
    out, _ = infini.memory_retrieve_forward(sk, M, z)
    check_close("memory_retrieve_forward after memory_update_forward (linear)",
                "the value read back with its own key", out, v, tol=1e-6)


def test_memory_update_backward_linear_finite_differences():
    sk, v = np.exp(randn(2, 2, 5, 4, seed=1)), randn(2, 2, 5, 4, seed=2)
    M, z = randn(2, 2, 4, 4, seed=3), np.exp(randn(2, 2, 4, seed=4))
    check_gradients("memory_update_backward (linear)", linear_update, infini.memory_update_backward,
                    [sk, v, M, z], ["dsk", "dv", "dM", "dz"])
