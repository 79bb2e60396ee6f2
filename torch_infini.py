"""
An independent PyTorch implementation of the Infini-Transformer in SPEC.md.

It exists for two reasons only:
  (a) a second opinion on the hand-written NumPy gradients in infini.py: autograd
      computes the same loss and gradients from the same parameter dict;
  (b) a side-by-side speed comparison in bench.py ("what would a normal PyTorch
      user get in eager mode?").

Torch is NOT a project requirement; nothing in the project imports this file on its
required path. Parameters are a plain dict name -> tensor with the SPEC names
(wte, h.{l}.wq, ..., h.{l}.beta, norm_f); weights multiply from the right, y = x @ W.

    logits = forward_torch(params_np, idx_np, cfg)                      # numpy in, numpy out
    loss, grads = loss_and_grads_torch(params_np, idx_np, targets_np, cfg)
    step = make_torch_trainer(cfg, params_np, device="cpu", dtype=torch.float32)
    loss = step(idx, targets)                                           # forward+backward+AdamW

Shapes use the SPEC letters: B batch, T tokens, N segment length, S segments,
C d_model, H heads, D head size, V vocab, L layers.
This module never calls torch.set_num_threads: the caller decides.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

EPS_NORM = 1e-5   # rmsnorm
EPS_MEM = 1e-6    # Eq. 7 / Eq. 9 denominator


def _cfg(cfg, name, default):
    return getattr(cfg, name, default)


# ----------------------------------------------------------------------------
# parameters

def param_shapes(cfg):
    """name -> (shape, init std or 'ones' or 'beta'), in the SPEC table's order."""
    V, C, L = cfg.vocab_size, cfg.d_model, cfg.n_layer
    std, std_res = 0.02, 0.02 / math.sqrt(2 * L)
    spec = {"wte": ((V, C), std)}
    for l in range(L):
        p = f"h.{l}."
        spec[p + "norm1"] = ((C,), "ones")
        spec[p + "norm2"] = ((C,), "ones")
        spec[p + "wq"] = ((C, C), std)
        spec[p + "wk"] = ((C, C), std)
        spec[p + "wv"] = ((C, C), std)
        spec[p + "wo"] = ((C, C), std_res)
        spec[p + "w1"] = ((C, 4 * C), std)
        spec[p + "w2"] = ((4 * C, C), std_res)
        if cfg.memory != "none":
            spec[p + "beta"] = ((cfg.n_head,), "beta")
    spec["norm_f"] = ((C,), "ones")
    return spec


def build(cfg, params=None, device="cpu", dtype=torch.float32, seed=0):
    """Leaf tensors (requires_grad) with the SPEC names.

    params: a dict name -> NumPy array (e.g. from infini.init_params) to load, or None
    to initialise per the SPEC table with a torch generator (not bit-equal to NumPy's).
    """
    spec = param_shapes(cfg)
    P = {}
    if params is not None:
        missing = set(spec) - set(params)
        extra = set(params) - set(spec)
        if missing or extra:
            raise KeyError(f"param names differ from SPEC: missing {sorted(missing)}, "
                           f"unexpected {sorted(extra)}")
        for name, (shape, _) in spec.items():
            a = np.asarray(params[name])
            if tuple(a.shape) != shape:
                raise ValueError(f"{name}: shape {a.shape}, SPEC says {shape}")
            t = torch.tensor(a, dtype=dtype, device=device)   # copies
            P[name] = t.requires_grad_(True)
        return P
    gen = torch.Generator().manual_seed(seed)
    for name, (shape, init) in spec.items():
        if init == "ones":
            t = torch.ones(shape, dtype=dtype)
        elif init == "beta":
            t = torch.full(shape, float(_cfg(cfg, "beta_init", 0.0)), dtype=dtype)
        else:
            t = torch.randn(shape, generator=gen, dtype=dtype) * init
        P[name] = t.to(device).requires_grad_(True)
    return P


# ----------------------------------------------------------------------------
# building blocks

def rmsnorm(x, g):                                        # (B,T,C), (C,)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS_NORM) * g


def sigma(x):                                             # elu + 1, positive features
    return F.elu(x) + 1.0


def rope_tables(N, D, base, device, dtype):
    """cos, sin of shape (N, D/2) for positions 0..N-1 (half-split rope)."""
    i = torch.arange(D // 2, device=device, dtype=torch.float64)
    inv_freq = base ** (-2.0 * i / D)                                  # (D/2,)
    ang = torch.arange(N, device=device, dtype=torch.float64)[:, None] * inv_freq
    return ang.cos().to(dtype), ang.sin().to(dtype)


def rope(x, cos, sin):                                    # (..., N, D), (N, D/2)
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def local_attention(q, k, v, N, base, use_sdpa=True):
    """Causal softmax attention inside each segment, all segments at once.

    q, k, v: (B,H,T,D). The sequence is zero-padded to S*N tokens so every segment is
    a full (N, N) block; the padding sits after the real tokens of the last segment,
    so causality keeps it out of every real query, and its outputs are dropped.
    """
    B, H, T, D = q.shape
    S = -(-T // N)
    pad = S * N - T
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    q, k, v = (t.reshape(B, H * S, N, D) for t in (q, k, v))     # (B,H*S,N,D)
    cos, sin = rope_tables(N, D, base, q.device, q.dtype)
    q, k = rope(q, cos, sin), rope(k, cos, sin)                   # positions 0..N-1
    if use_sdpa:
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)   # scale 1/sqrt(D)
    else:
        att = (q @ k.transpose(-2, -1)) / math.sqrt(D)            # (B,H*S,N,N)
        mask = torch.ones(N, N, dtype=torch.bool, device=q.device).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        a = att @ v
    return a.reshape(B, H, S * N, D)[:, :, :T]                    # (B,H,T,D)


def memory_attention(q, k, v, N, kind, detach_every=None):
    """Compressive-memory retrieval A_mem (Eq. 7) for every segment, with the update
    (Eq. 8 linear / Eq. 9 delta) after retrieval. M, z start at zero; gradients flow
    through M and z across all segments (full BPTT) unless detach_every=k, which
    cuts the memory entering segments k, 2k, ... (truncated BPTT). q, k, v: (B,H,T,D) un-rotated. Returns (B,H,T,D)."""
    B, H, T, D = q.shape
    sq, sk = sigma(q), sigma(k)                                   # (B,H,T,D)
    M = q.new_zeros(B, H, D, D)
    z = q.new_zeros(B, H, D)
    out = []
    starts = list(range(0, T, N))
    for s, t0 in enumerate(starts):
        sQ, sK, Vs = sq[:, :, t0:t0 + N], sk[:, :, t0:t0 + N], v[:, :, t0:t0 + N]
        # Eq. 7: A_mem = sigma(Q) M / (sigma(Q) z + eps)
        out.append((sQ @ M) / (sQ @ z.unsqueeze(-1) + EPS_MEM))   # (B,H,n,D)
        if s == len(starts) - 1:
            break                                 # the last update is never read
        if kind == "linear":                      # Eq. 8
            M = M + sK.transpose(-2, -1) @ Vs
        elif kind == "delta":                     # Eq. 9
            Vret = (sK @ M) / (sK @ z.unsqueeze(-1) + EPS_MEM)
            M = M + sK.transpose(-2, -1) @ (Vs - Vret)
        else:
            raise ValueError(f"unknown memory kind {kind!r}")
        z = z + sK.sum(dim=2)                     # (B,H,D)
        if detach_every and (s + 1) % detach_every == 0:
            M, z = M.detach(), z.detach()
    return torch.cat(out, dim=2)


def infini_attention(h, P, l, cfg, use_sdpa=True, detach_every=None):   # h (B,T,C)
    B, T, C = h.shape
    H = cfg.n_head
    D = C // H
    p = f"h.{l}."

    def heads(w):                                  # (B,T,C) -> (B,H,T,D): reshape, transpose
        return (h @ P[p + w]).view(B, T, H, D).transpose(1, 2)

    q, k, v = heads("wq"), heads("wk"), heads("wv")
    N = cfg.segment_len
    A = local_attention(q, k, v, N, float(_cfg(cfg, "rope_base", 10000.0)), use_sdpa)
    if cfg.memory != "none":
        if detach_every is None:                   # same meaning as infini.Config.bptt_segments
            detach_every = _cfg(cfg, "bptt_segments", 0) or None
        A_mem = memory_attention(q, k, v, N, cfg.memory, detach_every)
        g = torch.sigmoid(P[p + "beta"]).view(1, H, 1, 1)
        A = g * A_mem + (1 - g) * A                # Eq. 10
    y = A.transpose(1, 2).reshape(B, T, C)         # concat heads
    return y @ P[p + "wo"]


def forward_tensors(P, idx, cfg, use_sdpa=True, detach_every=None):
    """idx (B,T) long tensor -> logits (B,T,V)."""
    x = P["wte"][idx]                                                # (B,T,C)
    for l in range(cfg.n_layer):
        p = f"h.{l}."
        x = x + infini_attention(rmsnorm(x, P[p + "norm1"]), P, l, cfg,
                                 use_sdpa, detach_every)
        hid = F.gelu(rmsnorm(x, P[p + "norm2"]) @ P[p + "w1"], approximate="tanh")
        x = x + hid @ P[p + "w2"]
    x = rmsnorm(x, P["norm_f"])
    return x @ P["wte"].T                                            # tied head


def loss_tensors(P, idx, targets, cfg, use_sdpa=True, detach_every=None):
    logits = forward_tensors(P, idx, cfg, use_sdpa, detach_every)
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-1)


# ----------------------------------------------------------------------------
# NumPy-in, NumPy-out helpers (for tests against infini.py)

def _dtype_of(params_np):
    return torch.float64 if np.asarray(params_np["wte"]).dtype == np.float64 else torch.float32


def forward_torch(params_np, idx_np, cfg, use_sdpa=True):
    """Logits (B,T,V) as NumPy, computed in the params' dtype on the CPU."""
    P = build(cfg, params_np, dtype=_dtype_of(params_np))
    with torch.no_grad():
        logits = forward_tensors(P, torch.as_tensor(np.asarray(idx_np), dtype=torch.long),
                                 cfg, use_sdpa)
    return logits.numpy()


def loss_and_grads_torch(params_np, idx_np, targets_np, cfg, use_sdpa=True,
                         detach_every=None):
    """(loss float, grads dict name -> NumPy array with the keys of params_np), by
    autograd in the params' dtype (float64 params -> float64 math)."""
    P = build(cfg, params_np, dtype=_dtype_of(params_np))
    idx = torch.as_tensor(np.asarray(idx_np), dtype=torch.long)
    tgt = torch.as_tensor(np.asarray(targets_np), dtype=torch.long)
    loss = loss_tensors(P, idx, tgt, cfg, use_sdpa, detach_every)
    loss.backward()
    grads = {n: t.grad.numpy() if t.grad is not None else np.zeros(tuple(t.shape),
             dtype=np.asarray(params_np[n]).dtype) for n, t in P.items()}
    return float(loss.item()), grads


# ----------------------------------------------------------------------------
# a full training step, for bench.py

def make_torch_trainer(cfg, params_np=None, device="cpu", dtype=torch.float32, lr=1e-3,
                       weight_decay=0.1, betas=(0.9, 0.95), compile=False,
                       use_sdpa=True, detach_every=None, seed=0, grad_clip=0.0):
    """Returns step(idx, targets) -> loss float: forward, backward, one AdamW step.

    Weight decay applies only to 2-D weights (wte, wq, wk, wv, wo, w1, w2); norms and
    beta get none. grad_clip > 0 clips the global gradient norm. idx/targets may be
    NumPy arrays or tensors. compile=True wraps the
    loss in torch.compile (needs a working C++ compiler; off by default).
    detach_every=None follows cfg.bptt_segments when cfg has it (0 = full BPTT).
    The parameter dict is available as step.params.
    """
    P = build(cfg, params_np, device=device, dtype=dtype, seed=seed)
    decay = [t for t in P.values() if t.dim() == 2]
    no_decay = [t for t in P.values() if t.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=betas)

    def loss_fn(idx, tgt):
        return loss_tensors(P, idx, tgt, cfg, use_sdpa, detach_every)

    if compile:
        loss_fn = torch.compile(loss_fn)

    def to_long(a):
        if isinstance(a, torch.Tensor):
            return a.to(device=device, dtype=torch.long)
        return torch.as_tensor(np.asarray(a), dtype=torch.long).to(device)

    def step(idx, targets):
        loss = loss_fn(to_long(idx), to_long(targets))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(list(P.values()), grad_clip)
        opt.step()
        return float(loss.item())               # .item() also waits for the device

    step.params = P
    step.optimizer = opt
    return step
