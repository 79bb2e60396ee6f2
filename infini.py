"""
infini.py: an Infini-Transformer with hand-written forward and backward passes.

Munkhdalai, Faruqui, Gopal, "Leave No Context Behind: Efficient Infinite Context
Transformers with Infini-attention", arXiv 2404.07143 (2024). Equation numbers are
from its v2 text; the exact math we implement is in SPEC.md.

The sequence is cut into segments of N tokens. Inside a segment, each head runs
ordinary causal softmax attention (with rope). Across segments, each head keeps a
compressive memory M (D, D) and a normaliser z (D,): every segment first reads the
memory with linear attention, then writes its own keys and values into it. A learned
per-head gate mixes the two reads. The memory never grows, so the model reads inputs
of any length with a fixed state.

Every operation is a pair, forward beside backward (as in llm.c and CS231n):
    out, cache = op_forward(inputs...)
    dinputs... = op_backward(dout, cache)
Parameters and gradients are plain dicts of arrays with the same keys. The arrays'
module decides the device (NumPy on the CPU, CuPy on the GPU, same code) and their
dtype decides the arithmetic (float32 for training, float64 for gradient checks).

Letters: B batch, T tokens, N segment length, S segments, C d_model, H heads,
D = C / H head size, V vocab size, L layers.
"""

import math
from dataclasses import dataclass

import numpy as np

# -----------------------------------------------------------------------------
# one backend switch: NumPy or CuPy, decided by the arrays themselves


def get_array_module(x):
    """The module (numpy or cupy) that owns array x. A CuPy array means CuPy is imported."""
    if type(x).__module__.split(".")[0] == "cupy":
        import cupy
        return cupy
    return np


def scatter_add(a, indices, values):
    """a[indices] += values, adding repeated indices up (np.add.at / cupyx.scatter_add)."""
    xp = get_array_module(a)
    if hasattr(xp.add, "at"):   # NumPy, and CuPy from version 12
        xp.add.at(a, indices, values)
    else:
        import cupyx
        cupyx.scatter_add(a, indices, values)


def to_numpy(x):
    """A host NumPy copy of x (for logging and checkpoints)."""
    return x.get() if hasattr(x, "get") else np.asarray(x)


def backend(device):
    """The array module for device 'cpu' (NumPy), 'cuda' (CuPy, with a GPU present) or 'auto'
    (CuPy when it finds a GPU, else NumPy). ValueError with the fix if 'cuda' cannot run."""
    if device == "auto":
        try:
            return backend("cuda")
        except ValueError:
            return np
    if device == "cpu":
        return np
    if device != "cuda":
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'auto'")
    try:
        import cupy
    except ImportError:
        raise ValueError("device 'cuda' needs CuPy: pip install cupy-cuda12x (or cupy-cuda13x)") from None
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no driver, or no device
        n = 0
    if n == 0:
        raise ValueError("device 'cuda' needs a GPU, but CuPy finds none")
    return cupy


def device_name(xp):
    """'cpu' for NumPy, 'cuda' for CuPy."""
    return "cpu" if xp is np else "cuda"


def to_device(xp, params, opt=None):
    """params (and AdamW's state, if given) as arrays of xp: a CPU checkpoint runs on a GPU.
    -> params, opt"""
    def move(tree):
        return {k: xp.asarray(v) for k, v in tree.items()}
    return move(params), (None if opt is None else {"step": opt["step"], "m": move(opt["m"]), "v": move(opt["v"])})


# -----------------------------------------------------------------------------
# configuration and parameters

MEMORY_MODES = ("none", "linear", "delta")


@dataclass
class Config:
    vocab_size: int = 65
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    segment_len: int = 64       # N, tokens per segment
    memory: str = "delta"       # "none" (local attention only), "linear" (Eq. 8) or "delta" (Eq. 9)
    beta_init: float = 0.0      # initial gate logit: sigmoid(0) = 0.5 mixes both reads equally
    rope_base: float = 10000.0
    bptt_segments: int = 0      # 0: full BPTT through the memory; k > 0: stop the gradient every k segments

    def __post_init__(self):
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "segment_len"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Config.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_head != 0:
            raise ValueError(f"Config.d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if self.head_size % 2 != 0:
            raise ValueError(f"head size d_model/n_head = {self.head_size} must be even for rope")
        if not self.rope_base > 0:
            raise ValueError(f"Config.rope_base must be positive, got {self.rope_base!r}")
        if self.memory not in MEMORY_MODES:
            raise ValueError(f"Config.memory must be one of {MEMORY_MODES}, got {self.memory!r}")
        if not isinstance(self.bptt_segments, (int, np.integer)) or self.bptt_segments < 0:
            raise ValueError(f"Config.bptt_segments must be an integer >= 0, got {self.bptt_segments!r}")
        if self.vocab_size > 65536:
            raise ValueError(f"Config.vocab_size ({self.vocab_size}) must fit uint16 token files (<= 65536)")

    @property
    def head_size(self):
        return self.d_model // self.n_head


def param_shapes(cfg):
    """Every parameter's name and shape (SPEC.md, 'Parameters')."""
    C, V = cfg.d_model, cfg.vocab_size
    shapes = {"wte": (V, C)}
    for l in range(cfg.n_layer):
        shapes[f"h.{l}.norm1"] = (C,)
        shapes[f"h.{l}.wq"] = (C, C)
        shapes[f"h.{l}.wk"] = (C, C)
        shapes[f"h.{l}.wv"] = (C, C)
        shapes[f"h.{l}.wo"] = (C, C)
        if cfg.memory != "none":
            shapes[f"h.{l}.beta"] = (cfg.n_head,)
        shapes[f"h.{l}.norm2"] = (C,)
        shapes[f"h.{l}.w1"] = (C, 4 * C)
        shapes[f"h.{l}.w2"] = (4 * C, C)
    shapes["norm_f"] = (C,)
    return shapes


def init_params(cfg, seed=0, dtype=np.float32):
    """A dict name -> NumPy array, initialised as SPEC.md says. Move it with xp.asarray."""
    rng = np.random.default_rng(seed)
    proj_std = 0.02 / math.sqrt(2 * cfg.n_layer)  # residual projections, as GPT-2
    params = {}
    for name, shape in param_shapes(cfg).items():
        leaf = name.split(".")[-1]
        if leaf in ("norm1", "norm2", "norm_f"):
            p = np.ones(shape)
        elif leaf == "beta":
            p = np.full(shape, cfg.beta_init)
        elif leaf in ("wo", "w2"):
            p = rng.normal(0.0, proj_std, shape)
        else:
            p = rng.normal(0.0, 0.02, shape)
        params[name] = p.astype(dtype)
    return params


def num_params(params):
    return sum(int(p.size) for p in params.values())


# -----------------------------------------------------------------------------
# paired operations: each forward returns (out, cache), each backward takes
# (dout, cache) and returns the gradients of the forward's inputs, in order


def embedding_forward(wte, idx):
    # wte (V,C), idx (B,T) ints -> (B,T,C)
    return wte[idx], (wte.shape, idx)


def embedding_backward(dout, cache):
    shape, idx = cache
    xp = get_array_module(dout)
    dwte = xp.zeros(shape, dtype=dout.dtype)                               # (V,C)
    scatter_add(dwte, idx.reshape(-1), dout.reshape(-1, shape[1]))
    return dwte


def rmsnorm_forward(x, g, eps=1e-5):
    # x (B,T,C), g (C,): x / sqrt(mean(x^2) + eps) * g
    xp = get_array_module(x)
    rstd = 1.0 / xp.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)       # (B,T,1)
    xhat = x * rstd                                                        # (B,T,C)
    return xhat * g, (xhat, rstd, g)


def rmsnorm_backward(dout, cache):
    xhat, rstd, g = cache
    # forward was: out = xhat * g, xhat = x * rstd, rstd = (mean(x^2) + eps)^(-1/2)
    # LAB 1 BEGIN rmsnorm_backward
    dg = (dout * xhat).reshape(-1, xhat.shape[-1]).sum(axis=0)             # (C,)
    dxhat = dout * g                                                       # (B,T,C)
    dx = rstd * (dxhat - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, dg
    # LAB 1 END


def matmul_forward(x, w):
    # x (..., I), w (I, O) -> (..., O)
    return x @ w, (x, w)


def matmul_backward(dout, cache):
    x, w = cache
    # LAB 1 BEGIN matmul_backward
    dx = dout @ w.T
    dw = x.reshape(-1, x.shape[-1]).T @ dout.reshape(-1, dout.shape[-1])  # (I,O)
    return dx, dw
    # LAB 1 END


GELU_C = math.sqrt(2.0 / math.pi)


def gelu_forward(x):
    # tanh approximation: out = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
    xp = get_array_module(x)
    t = xp.tanh(GELU_C * (x + 0.044715 * x * x * x))                       # tanh(u), (B,T,4C)
    out = 0.5 * x * (1.0 + t)
    return out, (x, t)


def gelu_backward(dout, cache):
    x, t = cache
    # forward was: out = 0.5 x (1 + t), t = tanh(u), u = sqrt(2/pi) (x + 0.044715 x^3)
    # LAB 1 BEGIN gelu_backward
    # d out/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx, with du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    du_dx = GELU_C * (1.0 + 3 * 0.044715 * x * x)
    local_grad = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx
    return local_grad * dout
    # LAB 1 END


def split_heads(x, n_head):
    # (B,T,C) -> (B,H,T,D). The transpose matters: a reshape alone to (B,H,T,D) would
    # mix tokens of different positions into one head (SPEC.md, 'Known pitfalls').
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def merge_heads(x):
    # (B,H,T,D) -> (B,T,C)
    B, H, T, D = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * D)


def rope_forward(x, pos, base=10000.0):
    # x (B,H,n,D), pos (n,) positions. Half-split rope: x1, x2 = x[..., :D/2], x[..., D/2:]
    # out = [x1 cos - x2 sin, x1 sin + x2 cos], angle = pos * base^(-2i/D)
    xp = get_array_module(x)
    D = x.shape[-1]
    inv_freq = base ** (-xp.arange(0, D, 2, dtype=np.float64) / D)        # (D/2,)
    angle = xp.asarray(pos, dtype=np.float64)[:, None] * inv_freq[None, :]  # (n,D/2)
    cos, sin = xp.cos(angle).astype(x.dtype), xp.sin(angle).astype(x.dtype)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    out = xp.empty_like(x)
    out[..., : D // 2] = x1 * cos - x2 * sin
    out[..., D // 2:] = x1 * sin + x2 * cos
    return out, (cos, sin)


def rope_backward(dout, cache):
    # a rotation: its backward rotates back by the same angle
    cos, sin = cache
    # LAB 2 BEGIN rope_backward
    xp = get_array_module(dout)
    D = dout.shape[-1]
    d1, d2 = dout[..., : D // 2], dout[..., D // 2:]
    dx = xp.empty_like(dout)
    dx[..., : D // 2] = d1 * cos + d2 * sin
    dx[..., D // 2:] = d2 * cos - d1 * sin
    return dx
    # LAB 2 END


def sigma_forward(x):
    # the positive feature map of the memory: sigma(x) = elu(x) + 1, that is x + 1 above 0
    # and e^x below; written as e^min(x,0) + max(x,0), which is both at once
    # LAB 3 BEGIN sigma_forward
    xp = get_array_module(x)
    ex = xp.exp(xp.minimum(x, 0.0))
    return ex + xp.maximum(x, 0.0), ex
    # LAB 3 END


def sigma_backward(dout, cache):
    # LAB 3 BEGIN sigma_backward
    # the slope is 1 above 0 and e^x below: e^min(x,0) again
    ex = cache
    return dout * ex
    # LAB 3 END


def causal_attention_forward(q, k, v, q_start=0):
    # Eq. 5-6: softmax(q k^T / sqrt(D) + causal) v, inside one segment.
    # q (B,H,nq,D) at positions q_start.., k and v (B,H,nk,D) at positions 0..nk-1.
    # Training uses q_start = 0, nq = nk; streaming reads a few new queries at a time.
    # LAB 2 BEGIN causal_attention_forward
    xp = get_array_module(q)
    nq, nk, D = q.shape[2], k.shape[2], q.shape[3]
    scale = 1.0 / math.sqrt(D)
    att = (q @ k.transpose(0, 1, 3, 2)) * scale                            # (B,H,nq,nk)
    future = xp.arange(nk)[None, :] > (q_start + xp.arange(nq))[:, None]   # (nq,nk)
    att = xp.where(future, -xp.inf, att)
    att -= att.max(axis=-1, keepdims=True)
    p = xp.exp(att, out=att)                                               # in place: att is done
    p /= p.sum(axis=-1, keepdims=True)                                     # (B,H,nq,nk)
    return p @ v, (q, k, v, p, scale)
    # LAB 2 END


def causal_attention_backward(dout, cache):
    q, k, v, p, scale = cache
    # forward was: out = p @ v, p = softmax(q @ k^T * scale + causal)
    # LAB 2 BEGIN causal_attention_backward
    dv = p.transpose(0, 1, 3, 2) @ dout                                    # (B,H,nk,D)
    dp = dout @ v.transpose(0, 1, 3, 2)                                    # (B,H,nq,nk)
    datt = dp - (dp * p).sum(axis=-1, keepdims=True)                       # softmax backward:
    datt *= p                                                              # p (dp - sum(dp p))
    datt *= scale
    dq = datt @ k
    dk = datt.transpose(0, 1, 3, 2) @ q
    return dq, dk, dv
    # LAB 2 END


EPS_MEM = 1e-6


def memory_retrieve_forward(sq, M, z):
    # Eq. 7: A_mem = sigma(Q) M / (sigma(Q) z + eps). sq (B,H,n,D), M (B,H,D,D), z (B,H,D)
    # LAB 3 BEGIN memory_retrieve_forward
    num = sq @ M                                                           # (B,H,n,D)
    den = (sq @ z[..., None]) + EPS_MEM                                    # (B,H,n,1)
    out = num / den
    return out, (sq, M, z, out, den)
    # LAB 3 END


def memory_retrieve_backward(dout, cache):
    sq, M, z, out, den = cache
    # forward was: out = num / den, num = sq @ M, den = sq @ z + eps
    # LAB 3 BEGIN memory_retrieve_backward
    dnum = dout / den                                                      # (B,H,n,D)
    dden = -(dout * out).sum(axis=-1, keepdims=True) / den                 # (B,H,n,1)
    dsq = dnum @ M.transpose(0, 1, 3, 2) + dden * z[:, :, None, :]
    dM = sq.transpose(0, 1, 3, 2) @ dnum                                   # (B,H,D,D)
    dz = (sq * dden).sum(axis=2)                                           # (B,H,D)
    return dsq, dM, dz
    # LAB 3 END


def memory_update_forward(sk, v, M, z, rule):
    # sk = sigma(K), v: (B,H,n,D); M (B,H,D,D), z (B,H,D)
    # linear (Eq. 8): M' = M + sk^T v
    # delta  (Eq. 9): M' = M + sk^T (v - sk M / (sk z + eps)), only what M lacks is added
    # both:           z' = z + sum over the n tokens of sk
    if rule == "linear":
        # LAB 3 BEGIN memory_update_forward, linear rule
        M_next = M + sk.transpose(0, 1, 3, 2) @ v
        cache = (sk, v, None)
        # LAB 3 END
    else:
        # LAB 4 BEGIN memory_update_forward, delta rule
        v_old, rcache = memory_retrieve_forward(sk, M, z)                  # what M returns for K
        u = v - v_old                                                      # (B,H,n,D)
        M_next = M + sk.transpose(0, 1, 3, 2) @ u
        cache = (sk, u, rcache)
        # LAB 4 END
    z_next = z + sk.sum(axis=2)
    return (M_next, z_next), cache


def memory_update_backward(dM_next, dz_next, cache):
    sk, u, rcache = cache  # u is v (linear) or v - v_old (delta)
    # forward was: M' = M + sk^T u, z' = z + sum_n sk
    # LAB 3 BEGIN memory_update_backward, linear rule
    dsk = u @ dM_next.transpose(0, 1, 3, 2) + dz_next[:, :, None, :]       # (B,H,n,D)
    du = sk @ dM_next                                                      # (B,H,n,D)
    dM, dz = dM_next, dz_next
    # LAB 3 END
    if rcache is not None:
        # forward was: u = v - v_old, v_old = retrieve(sk, M, z)
        # LAB 4 BEGIN memory_update_backward, delta rule
        dsk2, dM2, dz2 = memory_retrieve_backward(-du, rcache)
        dsk, dM, dz = dsk + dsk2, dM + dM2, dz + dz2
        # LAB 4 END
    return dsk, du, dM, dz  # du is dv


def sigmoid(x):
    xp = get_array_module(x)
    return 1.0 / (1.0 + xp.exp(-x))


def gate_forward(a_mem, a_dot, beta):
    # Eq. 10: A = g * A_mem + (1 - g) * A_dot, g = sigmoid(beta), one gate per head
    # a_mem, a_dot (B,H,n,D), beta (H,)
    # LAB 4 BEGIN gate_forward
    g = sigmoid(beta)[None, :, None, None]                                 # (1,H,1,1)
    return g * a_mem + (1.0 - g) * a_dot, (a_mem, a_dot, g)
    # LAB 4 END


def gate_backward(dout, cache):
    a_mem, a_dot, g = cache
    # forward was: A = g*A_mem + (1-g)*A_dot, g = sigmoid(beta)
    # LAB 4 BEGIN gate_backward
    dg = (dout * (a_mem - a_dot)).sum(axis=(0, 2, 3))                      # (H,)
    dbeta = dg * (g * (1.0 - g)).reshape(-1)
    return g * dout, (1.0 - g) * dout, dbeta
    # LAB 4 END


# -----------------------------------------------------------------------------
# one segment of Infini-attention: the recurrent step


def infini_segment_forward(Q, K, V, M, z, beta, memory="delta", rope_base=10000.0):
    """One segment, every head at once, like one step of an RNN.

    Q, K, V (B,H,n,D) for the n <= N tokens of this segment; M (B,H,D,D) and z (B,H,D)
    the memory left by the previous segments (None when memory == "none"); beta (H,).
    Returns A (B,H,n,D), the next M and z, and the cache for the backward pass.
    """
    xp = get_array_module(Q)
    pos = xp.arange(Q.shape[2])                                            # 0..n-1 inside the segment
    # local causal softmax attention, with rope on Q and K (Eq. 5-6)
    qr, c_rq = rope_forward(Q, pos, rope_base)
    kr, c_rk = rope_forward(K, pos, rope_base)
    a_dot, c_att = causal_attention_forward(qr, kr, V)                    # (B,H,n,D)
    if memory == "none":
        return a_dot, None, None, (c_rq, c_rk, c_att, None)
    # memory: retrieve with the un-rotated queries (Eq. 7), mix (Eq. 10), then update (Eq. 8/9)
    sq, c_sq = sigma_forward(Q)
    sk, c_sk = sigma_forward(K)
    a_mem, c_ret = memory_retrieve_forward(sq, M, z)                      # (B,H,n,D)
    A, c_gate = gate_forward(a_mem, a_dot, beta)
    (M_next, z_next), c_upd = memory_update_forward(sk, V, M, z, memory)
    return A, M_next, z_next, (c_rq, c_rk, c_att, (c_sq, c_sk, c_ret, c_gate, c_upd))


def infini_segment_backward(dA, dM_next, dz_next, cache):
    """Gradients of one segment: dQ, dK, dV, and dM, dz for the previous segment, and dbeta."""
    c_rq, c_rk, c_att, c_mem = cache
    # LAB 4 BEGIN infini_segment_backward
    if c_mem is None:
        dqr, dkr, dV = causal_attention_backward(dA, c_att)
        return rope_backward(dqr, c_rq), rope_backward(dkr, c_rk), dV, None, None, None
    c_sq, c_sk, c_ret, c_gate, c_upd = c_mem
    # forward was: M', z' = update(sigma(K), V, M, z)           (Eq. 8 or 9)
    dsk, dV, dM, dz = memory_update_backward(dM_next, dz_next, c_upd)
    # forward was: A = g * A_mem + (1 - g) * A_dot                (Eq. 10)
    da_mem, da_dot, dbeta = gate_backward(dA, c_gate)
    # forward was: A_mem = sigma(Q) M / (sigma(Q) z + eps)         (Eq. 7)
    dsq, dM_ret, dz_ret = memory_retrieve_backward(da_mem, c_ret)
    dM, dz = dM + dM_ret, dz + dz_ret
    # forward was: A_dot = softmax(rope(Q) rope(K)^T / sqrt(D) + causal) V   (Eq. 5-6)
    dqr, dkr, dV_att = causal_attention_backward(da_dot, c_att)
    dQ = rope_backward(dqr, c_rq) + sigma_backward(dsq, c_sq)
    dK = rope_backward(dkr, c_rk) + sigma_backward(dsk, c_sk)
    return dQ, dK, dV + dV_att, dM, dz, dbeta
    # LAB 4 END


# -----------------------------------------------------------------------------
# layers and the whole model


def segment_bounds(T, N):
    """[(t0, t1), ...] cutting T tokens into segments of N (the last may be shorter)."""
    return [(t0, min(t0 + N, T)) for t0 in range(0, T, N)]


def attention_forward(h, p, l, cfg, memory=None):
    """Infini-attention of layer l over a whole sequence. h (B,T,C) -> (B,T,C).

    memory: (M, z) to start the recurrence from, like a stream's state (None: empty). They
    are constants here: attention_backward returns no gradient for them.
    The cache is a dict; besides what attention_backward needs it names q and k (B,T,C),
    the queries and keys, for code that adds a penalty on them.
    """
    xp = get_array_module(h)
    B, T, C = h.shape
    H, D = cfg.n_head, cfg.head_size
    q, c_q = matmul_forward(h, p[f"h.{l}.wq"])                            # (B,T,C)
    k, c_k = matmul_forward(h, p[f"h.{l}.wk"])
    v, c_v = matmul_forward(h, p[f"h.{l}.wv"])
    Q, K, V = split_heads(q, H), split_heads(k, H), split_heads(v, H)     # (B,H,T,D)
    beta = p.get(f"h.{l}.beta")
    M = z = None
    if cfg.memory != "none" and memory is not None:
        M, z = memory                                                      # (B,H,D,D), (B,H,D)
    elif cfg.memory != "none":
        M = xp.zeros((B, H, D, D), dtype=h.dtype)                          # memory starts empty
        z = xp.zeros((B, H, D), dtype=h.dtype)
    A = xp.empty_like(Q)                                                   # (B,H,T,D)
    seg_caches = []
    for t0, t1 in segment_bounds(T, cfg.segment_len):                      # the recurrence
        A[:, :, t0:t1], M, z, c = infini_segment_forward(
            Q[:, :, t0:t1], K[:, :, t0:t1], V[:, :, t0:t1], M, z, beta, cfg.memory, cfg.rope_base)
        seg_caches.append(c)
    out, c_o = matmul_forward(merge_heads(A), p[f"h.{l}.wo"])             # (B,T,C)
    cache = {"q": q, "k": k,                                               # (B,T,C), before the head split
             "c_q": c_q, "c_k": c_k, "c_v": c_v, "c_o": c_o,               # the four matmuls' caches
             "segments": seg_caches, "shape": (B, H, T, D)}                # infini_segment_forward's, in order
    return out, cache


def attention_backward(dout, cache, cfg):
    """Back-propagation through time over the segments, in reverse. -> dh, grads."""
    B, H, T, D = cache["shape"]
    seg_caches = cache["segments"]
    xp = get_array_module(dout)
    dA_merged, dwo = matmul_backward(dout, cache["c_o"])
    dA = split_heads(dA_merged, H)                                         # (B,H,T,D)
    dQ, dK, dV = xp.empty_like(dA), xp.empty_like(dA), xp.empty_like(dA)
    # LAB 4 BEGIN attention_backward, BPTT loop
    dM = dz = dbeta = None
    if cfg.memory != "none":
        dM = xp.zeros((B, H, D, D), dtype=dout.dtype)                      # nothing reads the final memory
        dz = xp.zeros((B, H, D), dtype=dout.dtype)
        dbeta = xp.zeros(H, dtype=dout.dtype)
    k = cfg.bptt_segments
    bounds = segment_bounds(T, cfg.segment_len)
    for s in reversed(range(len(bounds))):
        t0, t1 = bounds[s]
        dQ[:, :, t0:t1], dK[:, :, t0:t1], dV[:, :, t0:t1], dM, dz, db = infini_segment_backward(
            dA[:, :, t0:t1], dM, dz, seg_caches[s])
        if db is not None:
            dbeta += db
            if k > 0 and s % k == 0:   # truncated BPTT: the memory entering segment s is cut off
                dM, dz = xp.zeros_like(dM), xp.zeros_like(dz)
    # LAB 4 END
    dh_q, dwq = matmul_backward(merge_heads(dQ), cache["c_q"])
    dh_k, dwk = matmul_backward(merge_heads(dK), cache["c_k"])
    dh_v, dwv = matmul_backward(merge_heads(dV), cache["c_v"])
    return dh_q + dh_k + dh_v, dwq, dwk, dwv, dwo, dbeta


def mlp_forward(h, w1, w2):
    # gelu(h @ w1) @ w2: (B,T,C) -> (B,T,4C) -> (B,T,C)
    a, c1 = matmul_forward(h, w1)
    g, cg = gelu_forward(a)
    out, c2 = matmul_forward(g, w2)
    return out, (c1, cg, c2)


def mlp_backward(dout, cache):
    c1, cg, c2 = cache
    dg, dw2 = matmul_backward(dout, c2)
    da = gelu_backward(dg, cg)
    dh, dw1 = matmul_backward(da, c1)
    return dh, dw1, dw2


def log_softmax(logits):
    # (..., V) -> log p (..., V); the row's max is subtracted first so that exp cannot overflow
    xp = get_array_module(logits)
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - xp.log(xp.exp(z).sum(axis=-1, keepdims=True))


def cross_entropy_forward(logits, targets, weights=None):
    # logits (B,T,V), targets (B,T) with -1 meaning "no loss here". -> mean loss (scalar array)
    # weights (B,T), optional: the loss is then sum(w * ce) / sum(w) over the targets != -1
    xp = get_array_module(logits)
    V = logits.shape[-1]
    logits2 = logits.reshape(-1, V)                                        # (BT,V)
    t = targets.reshape(-1)
    valid = t != -1
    w = valid.astype(logits.dtype)                                         # (BT,) 1 or 0
    if weights is not None:
        w *= weights.reshape(-1)
    n = float(w.sum())
    logp = log_softmax(logits2)                                            # (BT,V)
    tsafe = xp.where(valid, t, 0)
    picked = logp[xp.arange(t.shape[0]), tsafe]                            # (BT,)
    loss = -(picked * w).sum() / n
    return loss, (logp, tsafe, w, n, logits.shape)


def cross_entropy_backward(dloss, cache):
    logp, tsafe, w, n, shape = cache
    xp = get_array_module(logp)
    dlogits = xp.exp(logp)                                                 # softmax
    dlogits[xp.arange(tsafe.shape[0]), tsafe] -= 1.0
    dlogits *= (w[:, None] * (dloss / n)).astype(logp.dtype)
    return dlogits.reshape(shape)


PLAIN_ATTENTION = (attention_forward, attention_backward)


def model_forward(params, idx, cfg, attention=PLAIN_ATTENTION):
    """idx (B,T) -> logits (B,T,V), cache.

    attention is the (forward, backward) pair of the Infini-attention layer: the plain one
    above, or a faster one from speed/ that tests check against it.
    """
    p = params
    x, c_emb = embedding_forward(p["wte"], idx)                            # (B,T,C), no positions
    layer_caches = []
    for l in range(cfg.n_layer):
        h, c_n1 = rmsnorm_forward(x, p[f"h.{l}.norm1"])
        a, c_att = attention[0](h, p, l, cfg)
        x = x + a
        h, c_n2 = rmsnorm_forward(x, p[f"h.{l}.norm2"])
        m, c_mlp = mlp_forward(h, p[f"h.{l}.w1"], p[f"h.{l}.w2"])
        x = x + m
        layer_caches.append((c_n1, c_att, c_n2, c_mlp))
    xf, c_nf = rmsnorm_forward(x, p["norm_f"])
    logits, c_head = matmul_forward(xf, p["wte"].T)                        # tied head, (B,T,V)
    return logits, (c_emb, layer_caches, c_nf, c_head, attention[1])


def model_backward(dlogits, cache, cfg):
    """dlogits (B,T,V) -> grads, a dict with the keys of params."""
    c_emb, layer_caches, c_nf, c_head, attention_backward = cache
    grads = {}
    dxf, dwte_T = matmul_backward(dlogits, c_head)
    dx, grads["norm_f"] = rmsnorm_backward(dxf, c_nf)
    for l in reversed(range(cfg.n_layer)):
        c_n1, c_att, c_n2, c_mlp = layer_caches[l]
        # forward was: x = x + mlp(rmsnorm(x, norm2))
        dh, grads[f"h.{l}.w1"], grads[f"h.{l}.w2"] = mlp_backward(dx, c_mlp)
        dh, grads[f"h.{l}.norm2"] = rmsnorm_backward(dh, c_n2)
        dx = dx + dh
        # forward was: x = x + attention(rmsnorm(x, norm1))
        dh, dwq, dwk, dwv, dwo, dbeta = attention_backward(dx, c_att, cfg)
        grads[f"h.{l}.wq"], grads[f"h.{l}.wk"], grads[f"h.{l}.wv"], grads[f"h.{l}.wo"] = dwq, dwk, dwv, dwo
        if dbeta is not None:
            grads[f"h.{l}.beta"] = dbeta
        dh, grads[f"h.{l}.norm1"] = rmsnorm_backward(dh, c_n1)
        dx = dx + dh
    grads["wte"] = dwte_T.T + embedding_backward(dx, c_emb)                # tied: both uses add up
    return grads


# -----------------------------------------------------------------------------
# input checks: a clear ValueError instead of a silent wrong answer


def check_params(params, cfg):
    if not isinstance(cfg, Config):
        raise ValueError(f"cfg must be an infini.Config, got {type(cfg).__name__}")
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict of arrays (infini.init_params), got {type(params).__name__}")
    shapes = param_shapes(cfg)
    missing = sorted(set(shapes) - set(params))
    extra = sorted(set(params) - set(shapes))
    if missing or extra:
        raise ValueError(f"params do not match the config: missing {missing}, unexpected {extra}")
    for name in shapes:
        if not hasattr(params[name], "dtype") or not hasattr(params[name], "shape"):
            raise ValueError(f"param {name} must be a NumPy or CuPy array, got {type(params[name]).__name__}")
    dtypes = [params[name].dtype for name in shapes]
    dtype = max(set(dtypes), key=dtypes.count)  # the dtype most params have: blame the odd one out
    for name, shape in shapes.items():
        p = params[name]
        if tuple(p.shape) != shape:
            raise ValueError(f"param {name} has shape {tuple(p.shape)}, expected {shape}")
        if p.dtype != dtype or p.dtype.kind != "f":
            raise ValueError(f"param {name} has dtype {p.dtype}; all params must share one float dtype ({dtype})")


def first_nonfinite(arrays):
    """The name of the first array in the dict that holds a NaN or an infinity, else None."""
    for name, a in arrays.items():
        xp = get_array_module(a)
        if not bool(xp.isfinite(a).all()):
            return name
    return None


def check_finite_output(out, params):
    """A non-finite output is a ValueError when a parameter is NaN or inf, naming the first one.
    Only then are the parameters scanned, so the check costs nothing while all is finite; with
    finite parameters a non-finite output (a diverged training step) is the caller's to handle."""
    xp = get_array_module(out) if hasattr(out, "dtype") else np
    if bool(xp.isfinite(out).all()):
        return
    bad = first_nonfinite(params)
    if bad is not None:
        raise ValueError(f"param {bad} holds NaN or inf values: the model's output is not finite")


def check_tokens(idx, cfg, name="idx", lo=0):
    if not hasattr(idx, "dtype") or idx.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array, got {getattr(idx, 'dtype', type(idx))}")
    if idx.ndim != 2 or idx.shape[0] == 0 or idx.shape[1] == 0:
        raise ValueError(f"{name} must have shape (B, T) with B, T >= 1, got {tuple(idx.shape)}")
    # CuPy (and NumPy for negative ids) would silently wrap out-of-range ids around
    bad_lo, bad_hi = int(idx.min()) < lo, int(idx.max()) >= cfg.vocab_size
    if bad_lo or bad_hi:
        raise ValueError(f"{name} has values in [{int(idx.min())}, {int(idx.max())}], "
                         f"outside [{lo}, {cfg.vocab_size}) (vocab_size {cfg.vocab_size})")


def check_weights(weights, targets):
    if not hasattr(weights, "dtype") or tuple(weights.shape) != tuple(targets.shape):
        raise ValueError(f"weights must be an array of the targets' shape {tuple(targets.shape)}, "
                         f"got {tuple(getattr(weights, 'shape', ()))}")
    if float(weights.min()) < 0:
        raise ValueError(f"weights must not be negative, got {float(weights.min())}")
    if not float((weights * (targets != -1)).sum()) > 0:
        raise ValueError("the weights of the targets != -1 sum to 0: there is nothing to compute a loss on")


# -----------------------------------------------------------------------------
# public API


def forward(params, idx, cfg, attention=PLAIN_ATTENTION):
    """logits (B,T,V) for token ids idx (B,T). Memory starts empty for every sequence."""
    check_params(params, cfg)
    check_tokens(idx, cfg)
    logits, _ = model_forward(params, idx, cfg, attention)
    check_finite_output(logits, params)
    return logits


def loss_and_grads(params, idx, targets, cfg, attention=PLAIN_ATTENTION, weights=None, return_logits=False):
    """Mean cross-entropy over targets != -1, and its gradient for every parameter.

    attention: see model_forward (speed.fast.ATTENTION is a batched pair checked against it).
    weights (B,T), optional: a weight per target; the loss is then sum(w * ce) / sum(w).
    return_logits: also return the forward's logits (B,T,V), say for an accuracy.
    """
    check_params(params, cfg)
    check_tokens(idx, cfg)
    check_tokens(targets, cfg, name="targets", lo=-1)
    if targets.shape != idx.shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} differs from idx shape {tuple(idx.shape)}")
    if not bool((targets != -1).any()):
        raise ValueError("targets are all -1: there is nothing to compute a loss on")
    if weights is not None:
        check_weights(weights, targets)
    logits, cache = model_forward(params, idx, cfg, attention)
    loss, c_ce = cross_entropy_forward(logits, targets, weights)
    loss = float(loss)
    check_finite_output(loss, params)
    dlogits = cross_entropy_backward(1.0, c_ce)
    grads = model_backward(dlogits, cache, cfg)
    return (loss, grads, logits) if return_logits else (loss, grads)


# -----------------------------------------------------------------------------
# streaming inference: feed tokens in chunks of any size, with a state that never grows
#
# state = {"pos": tokens consumed,
#          "M": [per layer (B,H,D,D)], "z": [per layer (B,H,D)]   (absent for memory "none"),
#          "k": [per layer (B,H,t,D)], "v": [...]  keys (un-rotated) and values of the
#                                                  current, unfinished segment, t < N}


def init_state(params, cfg, batch_size=1):
    """An empty streaming state on the params' device and dtype."""
    xp = get_array_module(params["wte"])
    dt = params["wte"].dtype
    B, H, D, L = batch_size, cfg.n_head, cfg.head_size, cfg.n_layer
    state = {"pos": 0,
             "k": [xp.zeros((B, H, 0, D), dtype=dt) for _ in range(L)],
             "v": [xp.zeros((B, H, 0, D), dtype=dt) for _ in range(L)]}
    if cfg.memory != "none":
        state["M"] = [xp.zeros((B, H, D, D), dtype=dt) for _ in range(L)]
        state["z"] = [xp.zeros((B, H, D), dtype=dt) for _ in range(L)]
    return state


def memory_numbers(state):
    """Numbers held by the compressive memory, M and z: L*H*D*(D+1) per sequence (Table 1)."""
    return sum(int(a.size) for a in state.get("M", []) + state.get("z", []))


def state_numbers(state):
    """Numbers held by the whole streaming state: memory plus the unfinished segment's K, V."""
    return memory_numbers(state) + sum(int(a.size) for a in state["k"] + state["v"])


def _stream_piece(params, idx, state, cfg):
    """Tokens idx (B,t) that all fall inside the current segment -> logits, new state."""
    p = params
    xp = get_array_module(p["wte"])
    H, N = cfg.n_head, cfg.segment_len
    t0 = state["k"][0].shape[2]                                            # tokens already in this segment
    t1 = t0 + idx.shape[1]
    new = {"pos": state["pos"] + idx.shape[1], "k": [], "v": []}
    if cfg.memory != "none":
        new["M"], new["z"] = [], []
    x, _ = embedding_forward(p["wte"], idx)                                # (B,t,C)
    for l in range(cfg.n_layer):
        h, _ = rmsnorm_forward(x, p[f"h.{l}.norm1"])
        Q = split_heads(h @ p[f"h.{l}.wq"], H)                             # (B,H,t,D)
        K = xp.concatenate([state["k"][l], split_heads(h @ p[f"h.{l}.wk"], H)], axis=2)  # (B,H,t1,D)
        V = xp.concatenate([state["v"][l], split_heads(h @ p[f"h.{l}.wv"], H)], axis=2)
        qr, _ = rope_forward(Q, xp.arange(t0, t1), cfg.rope_base)
        kr, _ = rope_forward(K, xp.arange(t1), cfg.rope_base)
        A, _ = causal_attention_forward(qr, kr, V, q_start=t0)            # (B,H,t,D)
        if cfg.memory != "none":
            # LAB 6 BEGIN _stream_piece, memory read and write
            M, z = state["M"][l], state["z"][l]
            a_mem, _ = memory_retrieve_forward(sigma_forward(Q)[0], M, z)
            A, _ = gate_forward(a_mem, A, p[f"h.{l}.beta"])
            if t1 == N:                                                    # segment complete: write it
                (M, z), _ = memory_update_forward(sigma_forward(K)[0], V, M, z, cfg.memory)
            new["M"].append(M)
            new["z"].append(z)
            # LAB 6 END
        if t1 == N:                                                        # and start the next one empty
            K, V = K[:, :, :0], V[:, :, :0]
        new["k"].append(K)
        new["v"].append(V)
        x = x + merge_heads(A) @ p[f"h.{l}.wo"]
        h, _ = rmsnorm_forward(x, p[f"h.{l}.norm2"])
        x = x + gelu_forward(h @ p[f"h.{l}.w1"])[0] @ p[f"h.{l}.w2"]
    x, _ = rmsnorm_forward(x, p["norm_f"])
    return x @ p["wte"].T, new


def forward_stream(params, idx, state, cfg):
    """Logits (B,t,V) of new tokens idx (B,t) given everything before them, and the new state.

    Feeding a sequence in chunks of any sizes gives the logits of one forward() call,
    while the state stays at most L*H*(D*(D+1) + 2*N*D) numbers per sequence.
    """
    check_params(params, cfg)
    check_tokens(idx, cfg)
    if idx.shape[0] != state["k"][0].shape[0]:
        raise ValueError(f"idx has batch size {idx.shape[0]}, the state {state['k'][0].shape[0]}")
    xp = get_array_module(params["wte"])
    logits, i, T = [], 0, idx.shape[1]
    while i < T:                                                           # cut at segment boundaries
        n = min(T - i, cfg.segment_len - state["k"][0].shape[2])
        out, state = _stream_piece(params, idx[:, i:i + n], state, cfg)
        logits.append(out)
        i += n
    logits = logits[0] if len(logits) == 1 else xp.concatenate(logits, axis=1)
    check_finite_output(logits, params)
    return logits, state


# -----------------------------------------------------------------------------
# optimiser: AdamW with decoupled weight decay, and global gradient-norm clipping


def adamw_init(params):
    """Optimiser state: first and second moments per parameter, and the step count."""
    xp = get_array_module(params["wte"])
    return {"step": 0,
            "m": {k: xp.zeros_like(p) for k, p in params.items()},
            "v": {k: xp.zeros_like(p) for k, p in params.items()}}


def is_decayed(name, p):
    # weight decay on matrices (embedding, projections, MLP) only; never on norms and beta
    return p.ndim >= 2


def adamw_step(params, grads, opt, lr, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8,
               beta_lr_mult=1.0):
    """One AdamW step, updating params and opt in place.

    beta_lr_mult scales the learning rate of the gate logits beta: at an ordinary
    learning rate most gates stay near 0.5 (SPEC.md, 'Known pitfalls').
    """
    xp = get_array_module(params["wte"])
    b1, b2 = betas
    opt["step"] += 1
    t = opt["step"]
    bias1, bias2 = 1.0 - b1 ** t, 1.0 - b2 ** t
    for name, p in params.items():
        g, m, v = grads[name], opt["m"][name], opt["v"][name]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        # LAB 5 BEGIN adamw_step, gate learning rate and weight decay
        lr_p = lr * beta_lr_mult if name.endswith(".beta") else lr
        if weight_decay and is_decayed(name, p):
            p *= 1.0 - lr_p * weight_decay                                 # decoupled decay
        # LAB 5 END
        p -= (lr_p / bias1) * m / (xp.sqrt(v / bias2) + eps)


def cosine_lr(step, learning_rate, min_lr, warmup_iters, decay_iters):
    """The learning rate at step: linear warmup to learning_rate over warmup_iters steps, then
    cosine decay down to min_lr at decay_iters, and min_lr after it."""
    if step < warmup_iters:
        return learning_rate * (step + 1) / (warmup_iters + 1)
    if step >= decay_iters:
        return min_lr
    ratio = (step - warmup_iters) / (decay_iters - warmup_iters)                  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


def clip_grad_norm(grads, max_norm):
    """Scale all gradients in place so their global L2 norm is at most max_norm. -> norm before."""
    xp = get_array_module(grads["wte"])
    norm = math.sqrt(sum(float(xp.sum(g * g)) for g in grads.values()))
    if max_norm and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads.values():
            g *= scale
    return norm
