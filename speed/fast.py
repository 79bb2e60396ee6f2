"""
speed/fast.py: the Infini-attention layer with its segments batched, the same math as infini.py.

infini.attention_forward/backward walk through the segments one at a time, which is the
clearest way to read the recurrence. This version computes everything that does not
depend on the recurrence for all segments at once, and keeps only the small memory
step in a loop:

- q, k, v come from one matmul with [wq | wk | wv] (C, 3C), and their gradients go back
  through one matmul too;
- the sequence is padded to S*N tokens and viewed as (B, H, S, N, D), so rope, sigma,
  the local causal attention (Eq. 5-6) and the memory read of the queries (Eq. 7) are
  one batched operation each; the padding sits after the last real token of the last
  segment, where the causal mask keeps it out of every real output;
- z rides along as one more column of M: with Mz = [M | z] (D, D+1) and v1 = [v | 1],
  the read sigma(Q) Mz gives numerator and denominator in one matmul, and the update
  sigma(K)^T v1 writes M and z in one matmul (the paper's D x (D+1) memory);
- the loop over segments only updates Mz (Eq. 8 or 9), forward and back;
- the final update, which nothing reads, is skipped.

train.py trains with it on the CPU (--attention=auto): there a step of its default model
is 7-17% faster than with the plain layer (docs/speed.md; `python bench.py --config=train`
times both). It works on NumPy and CuPy arrays alike. tests/test_speed.py checks it against
the plain layer (outputs and every gradient); use it through

    loss, grads = infini.loss_and_grads(params, idx, targets, cfg, attention=fast.ATTENTION)
"""

import math

import infini
from infini import get_array_module, rope_backward, rope_forward, sigma_backward, sigma_forward


def _mz_read(s, Mz):
    # Eq. 7 with z as the last column of Mz: s (..., n, D), Mz (..., D, D+1)
    r = s @ Mz                                                             # (..., n, D+1)
    den = r[..., -1:] + infini.EPS_MEM
    return r[..., :-1] / den, den


def _mz_read_backward(dout, out, den, s, Mz):
    # forward was: out = r[..., :D] / den, den = r[..., D] + eps, r = s @ Mz
    xp = get_array_module(dout)
    dr = xp.concatenate([dout / den, -(dout * out).sum(axis=-1, keepdims=True) / den], axis=-1)
    return dr @ Mz.swapaxes(-1, -2), s.swapaxes(-1, -2) @ dr                # ds, dMz


def attention_forward(h, p, l, cfg):
    """Infini-attention of layer l, all segments at once where the math allows. h (B,T,C)."""
    xp = get_array_module(h)
    B, T, C = h.shape
    H, D, N = cfg.n_head, cfg.head_size, cfg.segment_len
    S = -(-T // N)                                                         # segments, the last padded
    w_qkv = xp.concatenate([p[f"h.{l}.wq"], p[f"h.{l}.wk"], p[f"h.{l}.wv"]], axis=1)  # (C,3C)
    qkv = h @ w_qkv                                                        # (B,T,3C)
    if S * N != T:
        qkv = xp.concatenate([qkv, xp.zeros((B, S * N - T, 3 * C), dtype=h.dtype)], axis=1)
    qkv = xp.ascontiguousarray(qkv.reshape(B, S, N, 3, H, D).transpose(3, 0, 4, 1, 2, 5))  # (3,B,H,S,N,D)
    V = qkv[2]
    # local attention in every segment at once (Eq. 5-6), rope positions 0..N-1
    qk_r, c_rope = rope_forward(qkv[:2], xp.arange(N), cfg.rope_base)      # (2,B,H,S,N,D)
    scale = 1.0 / math.sqrt(D)
    att = qk_r[0] @ qk_r[1].swapaxes(-1, -2)                               # (B,H,S,N,N)
    att *= scale
    att += xp.triu(xp.full((N, N), -xp.inf, dtype=h.dtype), k=1)           # causal mask
    att -= att.max(axis=-1, keepdims=True)
    P = xp.exp(att, out=att)
    P /= P.sum(axis=-1, keepdims=True)
    A = P @ V                                                              # (B,H,S,N,D), A_dot
    cache = {"h": h, "w_qkv": w_qkv, "wo": p[f"h.{l}.wo"], "qk_r": qk_r, "c_rope": c_rope,
             "P": P, "V": V, "scale": scale, "shape": (B, T, C, H, D, N, S)}
    if cfg.memory != "none":
        sqk, ex_qk = sigma_forward(qkv[:2])                                # (2,B,H,S,N,D)
        sq, sk = sqk[0], sqk[1]
        ones = xp.ones((B, H, N, 1), dtype=h.dtype)
        Mz = xp.zeros((B, H, S, D, D + 1), dtype=h.dtype)                  # [M | z] entering each segment
        v_old, den_k = [None] * S, [None] * S
        for s in range(S - 1):                                             # the recurrence (Eq. 8 / 9)
            u = V[:, :, s]                                                 # (B,H,N,D)
            if cfg.memory == "delta":
                v_old[s], den_k[s] = _mz_read(sk[:, :, s], Mz[:, :, s])
                u = u - v_old[s]
            u1 = xp.concatenate([u, ones], axis=-1)                        # [u | 1]
            Mz[:, :, s + 1] = Mz[:, :, s] + sk[:, :, s].swapaxes(-1, -2) @ u1
        a_mem, den_q = _mz_read(sq, Mz)                                    # Eq. 7, all segments
        g = infini.sigmoid(p[f"h.{l}.beta"]).reshape(1, H, 1, 1, 1)
        a_dot = A
        A = g * a_mem + (1.0 - g) * a_dot                                  # Eq. 10
        cache.update(sqk=sqk, ex_qk=ex_qk, Mz=Mz, v_old=v_old, den_k=den_k, a_mem=a_mem,
                     den_q=den_q, a_dot=a_dot, g=g)
    A = A.transpose(0, 2, 3, 1, 4).reshape(B, S * N, C)[:, :T]            # merge heads, unpad
    cache["A"] = A
    return A @ p[f"h.{l}.wo"], cache


def attention_backward(dout, cache, cfg):
    """-> dh, dwq, dwk, dwv, dwo, dbeta, as infini.attention_backward."""
    c = cache
    xp = get_array_module(dout)
    B, T, C, H, D, N, S = c["shape"]
    dwo = c["A"].reshape(-1, C).T @ dout.reshape(-1, C)                    # (C,C)
    dA = dout @ c["wo"].T                                                  # (B,T,C)
    if S * N != T:
        dA = xp.concatenate([dA, xp.zeros((B, S * N - T, C), dtype=dA.dtype)], axis=1)
    dA = xp.ascontiguousarray(dA.reshape(B, S, N, H, D).transpose(0, 3, 1, 2, 4))  # (B,H,S,N,D)
    V = c["V"]
    dbeta = None
    if cfg.memory != "none":
        g, Mz, (sq, sk) = c["g"], c["Mz"], c["sqk"]
        # forward was: A = g * A_mem + (1 - g) * A_dot                    (Eq. 10)
        dbeta = (dA * (c["a_mem"] - c["a_dot"])).sum(axis=(0, 2, 3, 4)) * (g * (1.0 - g)).reshape(-1)
        da_mem, dA = g * dA, (1.0 - g) * dA
        # forward was: A_mem = read(sigma(Q), Mz)                          (Eq. 7)
        dsq, dMz_read = _mz_read_backward(da_mem, c["a_mem"], c["den_q"], sq, Mz)
        dsk, dv_mem = xp.zeros_like(sk), xp.zeros_like(V)
        ones = xp.ones((B, H, N, 1), dtype=dout.dtype)
        dMz = xp.zeros((B, H, D, D + 1), dtype=dout.dtype)                 # d loss / d Mz[s+1]
        k = cfg.bptt_segments
        for s in reversed(range(S)):                                       # BPTT, in reverse
            if s < S - 1:
                # forward was: Mz[s+1] = Mz[s] + sigma(K_s)^T [u | 1], u = V_s (- v_old)
                u = V[:, :, s] if c["v_old"][s] is None else V[:, :, s] - c["v_old"][s]
                dsk[:, :, s] = xp.concatenate([u, ones], axis=-1) @ dMz.swapaxes(-1, -2)
                du = sk[:, :, s] @ dMz[..., :D]                            # (B,H,N,D)
                dv_mem[:, :, s] = du
                if c["v_old"][s] is not None:
                    # forward was: u = V_s - v_old, v_old = read(sigma(K_s), Mz[s])   (Eq. 9)
                    dsk_r, dMz_r = _mz_read_backward(-du, c["v_old"][s], c["den_k"][s], sk[:, :, s], Mz[:, :, s])
                    dsk[:, :, s] += dsk_r
                    dMz = dMz + dMz_r
            dMz = dMz + dMz_read[:, :, s]
            if k > 0 and s % k == 0:                                       # truncated BPTT
                dMz = xp.zeros_like(dMz)
        dsqk = sigma_backward(xp.stack([dsq, dsk]), c["ex_qk"])            # (2,B,H,S,N,D)
    # forward was: A_dot = softmax(rope(Q) rope(K)^T / sqrt(D) + causal) V  (Eq. 5-6)
    P, qk_r = c["P"], c["qk_r"]
    dV = P.swapaxes(-1, -2) @ dA                                           # (B,H,S,N,D)
    dP = dA @ V.swapaxes(-1, -2)                                           # (B,H,S,N,N)
    dP -= (dP * P).sum(axis=-1, keepdims=True)
    dP *= P                                                                # d att
    dP *= c["scale"]
    dqk = rope_backward(xp.stack([dP @ qk_r[1], dP.swapaxes(-1, -2) @ qk_r[0]]), c["c_rope"])
    if cfg.memory != "none":
        dqk += dsqk
        dV += dv_mem
    dqkv = xp.concatenate([dqk, dV[None]], axis=0)                         # (3,B,H,S,N,D)
    dqkv = dqkv.transpose(1, 3, 4, 0, 2, 5).reshape(B, S * N, 3 * C)[:, :T]
    h, w_qkv = c["h"], c["w_qkv"]
    dw_qkv = h.reshape(-1, C).T @ dqkv.reshape(-1, 3 * C)                  # (C,3C)
    dh = dqkv @ w_qkv.T
    return dh, dw_qkv[:, :C], dw_qkv[:, C:2 * C], dw_qkv[:, 2 * C:], dwo, dbeta


ATTENTION = (attention_forward, attention_backward)


def loss_and_grads(params, idx, targets, cfg):
    """infini.loss_and_grads with this layer."""
    return infini.loss_and_grads(params, idx, targets, cfg, attention=ATTENTION)
