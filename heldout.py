"""
heldout.py: per-character losses on the held-out plays, the score every comparison uses.

The validation split holds four whole plays (data/plays.py: VAL_PLAYS). Each play is read
from its start, and the loss of every next-token prediction is kept, so that a table can
say where a model is good: far into a play or near its start, at the start of a segment,
on the speaker names. How a model reads depends on what it is:

    stream   a model with memory reads the play through infini.forward_stream, N tokens at
             a time, with a state that never grows (the memory carries everything older)
    chunked  every segment of N tokens read alone: the context restarts every N and the
             memory starts empty each time (for a model without memory this is what
             streaming gives; for one with memory, the difference to "stream" is exactly
             what its memory contributes)
    sliding  a model without memory in windows of N tokens moved N/2 at a time: every
             prediction sees at least N/2 earlier tokens (twice the compute of chunked)

Used by longctx.py (loss by position, Table 2 of the paper) and nanogpt_compare.py
(against nanoGPT and against no memory at the same wall time).

    plays, meta = heldout.load_val_plays("data/shakespeare_char", eval_len=32768)
    losses, _ = heldout.play_losses(params, cfg, plays, mode="stream")   # one 1-D array per play
"""
import math
import os
import pickle
import re

import numpy as np

import infini

MODES = ("stream", "chunked", "sliding")


def load_val_plays(data_dir, eval_len):
    """-> [(name, ids)]: the first eval_len + 1 tokens of each held-out play (the whole play
    if eval_len is 0 or the play is shorter), int64 arrays, from val.bin and meta.pkl's val_docs."""
    with open(os.path.join(data_dir, "meta.pkl"), "rb") as f:
        meta = pickle.load(f)
    val = np.memmap(os.path.join(data_dir, "val.bin"), dtype=np.uint16, mode="r")
    plays = []
    for doc in meta["val_docs"]:
        end = doc["end"] if not eval_len else min(doc["end"], doc["start"] + eval_len + 1)
        plays.append((doc["name"], np.asarray(val[doc["start"]:end], dtype=np.int64)))
    return plays, meta


def token_losses(logits, targets):
    """-log p(target) of every position: logits (B,n,V), targets (B,n) -> (B,n) float64 NumPy."""
    logp = infini.log_softmax(infini.to_numpy(logits).astype(np.float64))  # (B,n,V)
    return -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]


def stream_losses(params, cfg, ids, progress=None):
    """Per-token losses (B,T) of ids (B,T+1), read through infini.forward_stream N tokens at a
    time (the state is bounded, whatever T). Token t's loss is for predicting ids[:, t+1]
    having read ids[:, :t+1]. -> losses, the largest state_numbers per sequence seen between calls."""
    xp = infini.get_array_module(params["wte"])
    B, T = ids.shape[0], ids.shape[1] - 1
    state = infini.init_state(params, cfg, batch_size=B)
    losses = np.empty((B, T))
    biggest = 0
    for t0 in range(0, T, cfg.segment_len):
        t1 = min(t0 + cfg.segment_len, T)
        logits, state = infini.forward_stream(params, xp.asarray(ids[:, t0:t1]), state, cfg)  # (B,n,V)
        losses[:, t0:t1] = token_losses(logits, ids[:, t0 + 1:t1 + 1])
        biggest = max(biggest, infini.state_numbers(state) // B)
        if progress is not None:
            progress.update(B * (t1 - t0))
    return losses, biggest


def chunked_losses(params, cfg, ids, progress=None):
    """Per-token losses (B,T) with every segment of N tokens read alone by one infini.forward:
    nothing reaches a segment from before it, not even through the memory."""
    xp = infini.get_array_module(params["wte"])
    B, T, N = ids.shape[0], ids.shape[1] - 1, cfg.segment_len
    losses = np.empty((B, T))
    for t0 in range(0, T, N):
        t1 = min(t0 + N, T)
        logits = infini.forward(params, xp.asarray(ids[:, t0:t1]), cfg)
        losses[:, t0:t1] = token_losses(logits, ids[:, t0 + 1:t1 + 1])
        if progress is not None:
            progress.update(B * (t1 - t0))
    return losses


def sliding_losses(params, cfg, ids, progress=None):
    """Per-token losses (B,T) of a model without memory, in sliding windows of N = segment_len
    tokens moved N/2 at a time: each token's prediction sees at least N/2 earlier tokens
    (all of them in the first window). One infini.forward per window."""
    if cfg.memory != "none":
        raise ValueError("sliding windows are for models without memory")
    xp = infini.get_array_module(params["wte"])
    B, T, N = ids.shape[0], ids.shape[1] - 1, cfg.segment_len
    stride = max(1, N // 2)
    losses = np.empty((B, T))
    for t0 in range(0, T, stride):                                         # these tokens' losses come
        t1 = min(t0 + stride, T)                                           # from the window [w0, t1)
        w0 = max(0, t1 - N)
        logits = infini.forward(params, xp.asarray(ids[:, w0:t1]), cfg)   # one segment: full attention
        losses[:, t0:t1] = token_losses(logits[:, t0 - w0:], ids[:, t0 + 1:t1 + 1])
        if progress is not None:
            progress.update(B * (t1 - t0))
    return losses


def play_losses(params, cfg, plays, mode="stream", progress=None):
    """Per-token losses of each play, a list of 1-D arrays, and the largest streaming state
    seen (stream only). mode: "stream", "chunked" or "sliding" (models without memory).
    Plays of one length are read together as one batch (they are when eval_len is shorter
    than every play)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    out = [None] * len(plays)
    biggest = 0
    by_len = {}
    for i, (_, ids) in enumerate(plays):
        by_len.setdefault(len(ids), []).append(i)
    for n, idxs in by_len.items():
        if n < 2:
            raise ValueError(f"play {plays[idxs[0]][0]} has fewer than 2 tokens")
        ids = np.stack([plays[i][1] for i in idxs])                        # (B,T+1)
        if mode == "sliding":
            losses = sliding_losses(params, cfg, ids, progress)
        elif mode == "chunked":
            losses = chunked_losses(params, cfg, ids, progress)
        else:
            losses, b = stream_losses(params, cfg, ids, progress)
            biggest = max(biggest, b)
        for j, i in enumerate(idxs):
            out[i] = losses[j]
    return out, biggest


def mean_where(losses, masks):
    """Mean of the losses where the masks are True (lists of 1-D arrays); NaN if none are."""
    n = sum(int(m.sum()) for m in masks)
    return float(sum(x[m].sum() for x, m in zip(losses, masks)) / n) if n else float("nan")


def bucket_means(losses, edges):
    """Mean loss of the positions in [edges[i], edges[i+1]) over all plays (a list of 1-D
    arrays of per-token losses), with the count of tokens in each. NaN for an empty bucket."""
    means, counts = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        parts = [x[a:b] for x in losses if len(x) > a]
        n = sum(len(p) for p in parts)
        means.append(float(sum(p.sum() for p in parts) / n) if n else float("nan"))
        counts.append(n)
    return means, counts


def segment_start_loss(losses, N, k=16):
    """Mean loss of the first k tokens of every segment but the first (positions p >= N with
    p mod N < k): there the local attention has seen almost nothing, so only a memory can help."""
    masks = [(np.arange(len(x)) >= N) & (np.arange(len(x)) % N < k) for x in losses]
    return mean_where(losses, masks)


def in_segment_means(losses, N, edges):
    """Mean loss by position inside a segment of N (p mod N in [edges[i], edges[i+1])),
    skipping the first segment of each play, where no model has anything older to use."""
    p = [np.arange(len(x)) for x in losses]
    return [mean_where(losses, [(q >= N) & (q % N >= a) & (q % N < b) for q in p])
            for a, b in zip(edges[:-1], edges[1:])]


SPEAKER_LINE = re.compile(r"(?:^|\n\n)([^\n]+:)\n")   # "\n\nHAMLET:\n" starts a speech


def speaker_name_masks(plays, itos):
    """Per play, True where the token predicted is part of a speaker's name line ("HAMLET:"
    and its newline; char-level data). Names are where the memory has the most to give: who
    is on stage was settled far back, often beyond any local window."""
    masks = []
    for _, ids in plays:
        text = "".join(itos[int(i)] for i in ids)
        mask = np.zeros(len(text), dtype=bool)
        for m in SPEAKER_LINE.finditer(text):
            a, b = m.span(1)
            mask[a:b + 1] = True
        masks.append(mask[1:])                       # position t predicts ids[t + 1]
    return masks


def position_curve(losses, n_bins=30, first=16):
    """(positions, mean losses) in bins [0, first) and then log-spaced, for the plot."""
    T = max(len(x) for x in losses)
    edges = np.unique(np.round(np.geomspace(min(first, T), T, n_bins)).astype(int))
    edges = np.concatenate([[0], edges])
    means, _ = bucket_means(losses, list(edges))
    centres = [math.sqrt(max(a, 1) * b) for a, b in zip(edges[:-1], edges[1:])]
    return centres, means
