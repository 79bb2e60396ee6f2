"""
passkey_memory.py: what passkey.py's recipe does to the memory in training.

Two devices, both for reading a key far beyond the training length, where the filler
outnumbers the key line many times more than in any training prompt:

- memory_penalty: the Infini-attention layer (infini.attention_forward/backward) with
  penalties on its memory's keys and queries, as an attention pair for infini.loss_and_grads.
  Filler characters that write almost nothing into the memory, and answer queries that do
  not read what they write, keep the key's share of the read as the filler grows.
- filler_memory and far_memory (far_fill): a memory that starts full, as if up to a million
  characters of filler came before the prompt, so that the training loss sees the dilution
  of the read that only a very long prompt brings.

docs/passkey_runs.md has the runs that led to each.
"""
import math

import numpy as np

import infini
from passkey_task import FILLER, STOI, encode, passage

CLOSED_GATE = -20.0  # the gate logit of a head whose memory is closed: sigmoid(-20) = 2e-9
FILL_EVERY = 20      # the tune phase measures the filler's memory (filler_memory) again every 20 steps

# -----------------------------------------------------------------------------
# penalties on the keys and queries of the open heads


def memory_penalty(key_strength, key_margin, query_strength=0.0, query_margin=0.0, prefill=None):
    """The Infini-attention layer with penalties on its memory's keys and queries, as an attention pair.

    Adds key_strength * mean(relu(k + key_margin)) over the keys k = h @ wk of each layer to
    the loss, and query_strength * mean(relu(q + query_margin)) over its queries q = h @ wq
    (their gradients only; the values are not reported). The forward pass is the plain one.
    Only the heads whose memory is open count (gate logit above CLOSED_GATE / 2; the mean
    still divides by every key of the layer): a closed head's memory is never read, and keys
    pushed below -margin would only saturate its local attention, where rope turns keys that
    large into logits set by the distance more than by the content.

    Keys: a filler token whose key sits below -margin writes almost nothing into z and M:
    sigma(k) = e^k. At 32x the training length the filler outnumbers the key line 32x more
    than in training, so its writes must be that much smaller than the training loss alone
    asks for; the penalty pushes every key that the loss does not need below -margin.
    Queries: the read sigma(q) M / (sigma(q) z) weighs each of a head's D dimensions by
    sigma(q). A few filler characters keep large keys in some dimension (the loss uses them),
    and an answer query that is small there but not tiny (q = -2, sigma(q) = 0.1) still reads
    them, once per filler repeat. The query penalty pushes every such dimension below -margin.
    prefill: a dict layer -> (M, z), the memory each prompt starts from (far_memory; passkey.py
    fills it anew for every batch); a layer not in it starts empty.
    """
    def forward(h, p, l, cfg):
        out, cache = infini.attention_forward(h, p, l, cfg, None if prefill is None else prefill.get(l))
        beta = p.get(f"h.{l}.beta")                                        # (H,) gate logits; none has none
        open_heads = None if beta is None else beta > CLOSED_GATE / 2     # (H,) bool
        return out, (cache, open_heads)

    def backward(dout, cache, cfg):
        cache, open_heads = cache
        dh, dwq, dwk, dwv, dwo, dbeta = infini.attention_backward(dout, cache, cfg)
        if open_heads is None or not bool(open_heads.any()):              # memory "none", or every head closed
            return dh, dwq, dwk, dwv, dwo, dbeta
        columns = infini.get_array_module(dout).repeat(open_heads, cfg.head_size)  # (C,): the open heads' columns
        dh_k, dwk_pen = penalty_backward(cache["k"], cache["c_k"], key_strength, key_margin, columns)
        dh_q, dwq_pen = penalty_backward(cache["q"], cache["c_q"], query_strength, query_margin, columns)
        return dh + dh_k + dh_q, dwq + dwq_pen, dwk + dwk_pen, dwv, dwo, dbeta

    def penalty_backward(a, c_matmul, strength, margin, columns):
        # d/d(h, w) of strength * mean(relu(a + margin)), a = h @ w (B,T,C): the matmul's backward of its step
        if strength <= 0:
            return 0.0, 0.0
        step = (a > -margin) & columns
        return infini.matmul_backward(step.astype(a.dtype) * (strength / a.size), c_matmul)
    return forward, backward


# -----------------------------------------------------------------------------
# a memory that starts full (far_fill)


def filler_memory(params, cfg, haystack=None, rng=None, stoi=STOI):
    """What filler alone leaves in each layer's memory: [(M, z per character)], n. Streams
    one cycle of the filler against the segments (n = lcm(90, segment_len) characters: every
    alignment of a filler repeat in its segment once), one prompt, no gradients. With a
    haystack text, n characters of it from a random point (rng) instead, encoded with stoi."""
    step = len(FILLER) + 1
    n = math.lcm(step, cfg.segment_len)
    xp = infini.get_array_module(params["wte"])
    text = (" " + FILLER) * (n // step) if haystack is None else passage(haystack, int(rng.integers(len(haystack))), n)
    ids = xp.asarray(encode(text, stoi))[None]
    _, state = infini.forward_stream(params, ids, infini.init_state(params, cfg, 1), cfg)  # segment by segment
    return [(M[0], z[0] / n) for M, z in zip(state["M"], state["z"])], n


def far_memory(filler, n, rng, batch_size, far_fill, rule):
    """The memory a batch starts from, as if F characters of filler came before each prompt:
    a dict layer -> (M, z) for memory_penalty's prefill. 3/4 of the prompts draw F log-uniform
    in n..far_fill, the others start empty (F = 0). z grows with every filler character, so
    z = F * (z per character); M grows likewise under the linear rule, while the delta rule
    writes only what M does not already return, so its M after one cycle stands for any F.
    That holds for a filler line repeated, not for real text, which never repeats: on the
    plays this stand-in teaches delta to lose a key written early (docs/passkey.md, "A real
    haystack"), so passkey.py leaves far_fill off for delta there.

    At 1M characters the filler's part of sigma(q) z can outweigh the key's, and the read
    sigma(q) M / sigma(q) z then fades, though nothing in a short training prompt shows it:
    with this memory the answer's loss pays for it (see docs/passkey_runs.md). M and z are
    constants to the gradient; filler_memory measures them again as the weights move.
    """
    F = np.exp(rng.uniform(math.log(n), math.log(far_fill), size=batch_size)) * (rng.random(batch_size) < 0.75)
    out = {}
    for l, (M, z_rate) in enumerate(filler):
        xp = infini.get_array_module(M)
        f = xp.asarray(F, dtype=M.dtype)
        scale = (f > 0).astype(M.dtype) if rule == "delta" else f / n
        out[l] = (scale[:, None, None, None] * M, f[:, None, None] * z_rate)
    return out
