"""
passkey.py: the paper's passkey retrieval test (Appendix B), small enough for a laptop.

A prompt hides a random number (the pass key, 1..50000) inside a long run of repeated
filler text and asks for it at the end. Character level; a prompt looks like this
(SPEC.md, "The passkey task"), one line per part:

    There is an important info hidden inside a lot of irrelevant text. Find it and ...
    The grass is green. The sky is blue. ... There and back again. The grass is ...   (x times)
    The pass key is 9054. Remember it. 9054 is the pass key.
    The grass is green. The sky is blue. ... There and back again. The grass is ...   (y times)
    What is the pass key? The pass key is

and the model must continue it with " 9054.". A small Infini-Transformer (infini.py) is
trained from scratch on short prompts, then asked for keys hidden in prompts up to 1M
characters long, read through the streaming state (memory bounded whatever the length).

    python passkey.py                       # the shipped models (passkey_ckpt/), 3 memories: the table
    python passkey.py --train               # train the three: none and linear from scratch (40-50 min
                                            #   each on one CPU core), then delta from linear (10 min)
    python passkey.py --train --memory=linear --out_dir=out-mine   # then --memory=delta, same out_dir
    python passkey.py --init_from=resume --memory=delta --eval_lengths=1452,1000000 --eval_depths=0,0.5,1
    python passkey.py --train --device=cuda     # on one GPU (CuPy)

Outputs go to out_dir/<memory>/: results.json (exact match % per length and depth, the
per-digit accuracy, and the answer's teacher-forced accuracy by the position in its segment
of the character read: see offset_accuracy), heatmap.png (depth x length), and for a
training run ckpt.npz (resumable with --init_from=resume), model.npz (the weights alone)
and log.jsonl.

What makes it train (each found by trying; see the settings below and docs/passkey_runs.md):
- the loss sits on the answer " 9054." and on the key's second occurrence in its own line
  ("Remember it. 9054 is"), at weight 1; every other character has weight 0.02;
- the gates are fixed (beta_lr_mult = 0): with learned gates the last layer closes its
  memory (g -> 0.01) before retrieval is learned, and the model settles for a bag of digits
  read by the first layer's memory;
- a curriculum over length: 4 filler repeats at most at first, up to 8 after 1500 steps,
  then up to 12 for 5500 steps, and a last tune phase (1500 steps, a fresh optimiser from
  lr 1e-3) at that length;
- segments of 128, and each training prompt after 0..127 newlines (shift_max): the answer
  meets every position in its segment. Without the shift a 5-digit key's answer ends at
  only 13 offsets (one per filler count), and the offsets never seen failed at long lengths;
- after the curriculum, 30% of the keys 4-digit and 30% of the prompts with the key line right
  before the question (short_keys, key_last): the local copy's cases.
What makes it reach further than the training length (the first two measured on the segment-32 models):
- fewer filler writes into the memory. The read is sigma(q) M / sigma(q) z, and every
  filler character adds to z (and, less, to M), so the key's share of the read falls as the
  filler grows: a head that reads 45% key at the training length reads 5% at 32x. The
  loss at the training length barely asks for more, so memory_penalty (key_penalty =
  0.02) pushes every key below -8, where sigma(k) = e^k is tiny, unless the loss needs it;
- sparse queries too (query_penalty = 0.02, the tune phase): a few filler characters keep
  large keys in some dimension, and an answer query that is small there but not tiny
  (sigma(q) = 0.1) reads them once per filler repeat. Pushing such query dimensions below
  -8 cut the filler's share of the retrieval heads' read at 32x from 30-40% to 0.5-3%;
- the first layer's memory closed (memory_layers = 1): its reads change with the
  length for every character, so the second layer's queries and keys drift; with it closed
  they depend on the local text only. The penalties act on the open heads only
  (penalize_closed = False): on the closed first layer they pushed its keys below -8 too,
  where rope gives logits set by the distance, and its attention copied the key from a fixed
  distance, wrong for every 4-digit key in the question's segment;
- a memory that starts full in the tune phase (far_fill): 3/4 of the prompts start from the
  memory that up to 1M characters of filler leave behind (far_memory). At 1M the filler's
  part of sigma(q) z can outweigh the key's, which a 1,452-character prompt never shows;
  with it the training loss does (delta from one linear model: 0/10/30 at 1M without it,
  80/100/100 with it; docs/passkey_runs.md).
Why delta starts from linear (delta_from_linear): trained from scratch, delta never learns
to copy a key that lies in the question's own segment (the key line right before the
question, which only local attention can reach), while linear forms a copy head in its
first 500 steps. Delta starts from the trained linear model and trains the tune phase with
the delta rule: it keeps the copy, and before far_fill it read the memory better far out
(at 1M characters 90/90/100 against linear's 30/70/50), likely because the delta rule
writes only what M does not already return: a filler line repeated adds almost nothing to
M, where linear adds it again at every repeat. With far_fill both read every key at 1M.
What still fails: where the answer's first digit is the first character of a segment
(offset 126 for a 5-digit key, 10-50% at 32x), that character sees only itself through local
attention: it cannot tell that it starts the answer, and the memory is a sum with no order to
help. Until penalize_closed = False, 4-digit keys in the question's own segment were copied
wrong too: the penalties saturated the closed first layer's attention into a copy from a
fixed distance (docs/passkey_runs.md). The evaluation prints the answer's accuracy by segment
position (offset_accuracy): 68% for a character read at position 0, 82% at 1, 86% at 2-3,
95-100% from there on.
Evaluation streams all prompts of one length with the same number of key digits together
(equal lengths whatever the depth), segment by segment, then decodes greedily.
"""
import itertools
import json
import math
import os
import re
import sys
import time

import numpy as np
from tqdm import tqdm

import checkpoint
import configurator
import infini
from kernels import parallel

# settings: plain variables, overridden by a config file or --key=value (configurator.py)

out_dir = "out-passkey"    # out_dir/<memory>/: ckpt.npz, model.npz, log.jsonl, results.json, heatmap.png
memory = "all"             # "none", "linear", "delta", or "all": the three, one after another
init_from = "shipped"      # "shipped": the trained models in passkey_ckpt/<memory>.npz (copies of
                           #   out_dir/<memory>/model.npz from --train): no training;
                           # "scratch": train a new model; "resume": out_dir/<memory>/ckpt.npz, trained
                           #   on to its max_iters if it was interrupted, then evaluated
train = False              # --train is short for --init_from=scratch (reproduce the shipped models)
overwrite = False          # True: --train may replace the checkpoints already in out_dir/<memory>/
device = "auto"            # "auto" (a GPU if CuPy finds one), "cpu" or "cuda"; the README's timings are the CPU's
# model
n_layer = 2
n_head = 4
d_model = 64
segment_len = 128          # N: a prompt of 1,452 characters spans 12 segments
rope_base = 10000.0        # rope's base in local attention (infini.Config)
# training: short prompts; the answer (and the key's second occurrence) carries the loss
max_iters = 7000
batch_size = 16
learning_rate = 1e-2       # a tiny model: a high rate, decayed (cosine) to min_lr at max_iters
min_lr = 1e-3
warmup_iters = 50
weight_decay = 0.0
grad_clip = 1.0
beta_init = 1.0            # gate logits start at sigmoid(1) = 0.73: mostly memory, in every layer
beta_lr_mult = 0.0         # and stay there: learned gates close the memory of the last layer
                           #   before it has learned to retrieve (its reads start as noise)
memory_layers = 1          # only the last memory_layers layers read their memory (gate logit beta_init);
                           #   the layers before have it closed (gate logit -20: sigmoid(-20) = 2e-9)
memory_heads = 0           # and in those layers only the first memory_heads heads (0: every head); the
                           #   other heads have it closed: local attention only
local_layers = 0           # the memory layers are followed by local_layers layers with their memory closed
                           #   (0: the memory layers are the last ones)
n_start = 4                # curriculum: a batch's prompts have n filler repeats, n drawn in 0..n_max,
n_end = 8                  #   n_max growing from n_start to n_end over the first curriculum_iters steps
curriculum_iters = 1500
long_iters = 5500          # then the last long_iters steps: n_max grows on to n_long,
n_long = 12                #   long_batch_size prompts per batch
long_batch_size = 16
answer_weight = 1.0        # loss weight of each answer character (and of the key's second occurrence)
lm_weight = 0.02           # loss weight of every other character
shift_max = 127            # each training prompt starts after 0..shift_max newlines (0: none), so that
                           #   the answer meets every position in its segment;
shift_from = 0             # from step shift_from on (before it, none: see docs/passkey_runs.md)
short_keys = 0.3           # from step curriculum_iters on, this fraction of the training keys is drawn from
key_last = 0.3             #   1000..9999 and this fraction of the prompts puts its key line last (0: off)
key_penalty = 0.02         # sparse memory writes: key_penalty * mean(relu(k + key_margin)) over every
key_margin = 8.0           #   key k of each layer is added to the loss (0: off); see memory_penalty
tune_iters = 1500          # a last phase after max_iters: a fresh optimiser, lr tune_lr (cosine to
tune_lr = 1e-3             #   tune_min_lr), prompts up to n_long repeats, and queries made sparse too:
tune_min_lr = 1e-4         #   query_penalty * mean(relu(q + query_margin)) over every query q of each
query_penalty = 0.02       #   layer (0: off); see memory_penalty
query_margin = 8.0
penalize_closed = False    # the penalties on the open heads only (True: also on the heads whose memory is
                           #   closed, the first layer's, which saturates their attention; docs/passkey_runs.md)
far_fill = 1000000         # the tune phase: 3/4 of the prompts start from the memory that F characters of
                           #   filler leave behind (F log-uniform from one filler cycle to far_fill; 0: off):
                           #   the z of a prompt far longer than those trained on (see far_memory)
delta_from_linear = True   # delta starts from the linear model trained before it (out_dir/linear/model.npz:
                           #   --memory=all trains linear first) and trains the tune phase alone with the
                           #   delta rule: see the README (False: from scratch, like the others)
# evaluation
eval_lengths = ""          # comma-separated prompt lengths in characters; "": 1x to 32x the longest training input
eval_depths = "0,0.25,0.5,0.75,1"  # key depths: 0 start, 0.5 middle, 1 end
eval_samples = 10          # keys per depth and length
eval_batch_size = 50       # prompts streamed together in one state
seed = 1337
# -----------------------------------------------------------------------------
DEFAULTS = configurator.defaults(globals())
MODES = ("none", "linear", "delta")
ROOT = os.path.dirname(os.path.abspath(__file__))
CLOSED_GATE = -20.0  # the gate logit of a layer whose memory is closed: sigmoid(-20) = 2e-9
SHIPPED = os.path.join(ROOT, "passkey_ckpt")  # the small trained checkpoints: <memory>.npz

# -----------------------------------------------------------------------------
# the prompt (SPEC.md, "The passkey task")

INTRO = ("There is an important info hidden inside a lot of irrelevant text. "
         "Find it and memorize them. I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEY_LINE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
KEY_MIN, KEY_MAX = 1, 50000

# the characters of the task: every prompt and answer is written with these (id = index)
CHARS = sorted(set(INTRO + FILLER + KEY_LINE.format(key="0123456789") + QUESTION + "\n"))
STOI = {ch: i for i, ch in enumerate(CHARS)}
VOCAB_SIZE = len(CHARS)


def encode(text):
    return np.array([STOI[ch] for ch in text], dtype=np.int64)


def decode(ids):
    return "".join(CHARS[int(i)] for i in ids)


def filler_counts(length, key):
    """The number n = x + y of filler repeats for a prompt of at most `length` characters.

    Parts are joined by single newlines and the repeats of one filler line by single spaces,
    so every repeat adds exactly len(FILLER) + 1 = 90 characters (an empty filler line is
    left out, with its newline). n is the largest count whose prompt is not longer than
    `length`: the prompt is at most 89 characters shorter than asked, never longer.
    Returns None when even n = 0 does not fit.
    """
    base = prompt_length(0, 0, key)
    if length < base:
        return None
    return (length - base) // (len(FILLER) + 1)


def make_prompt(length, depth, key):
    """The passkey prompt of at most `length` characters with `key` at `depth` (0 start, 1 end).

    With n = filler_counts(length, key) repeats in all, x = round(depth * n) go before the
    key line and y = n - x after it: depth 0 puts the key line right after the intro,
    depth 1 right before the question. Returns (prompt text, answer text " <key>.").
    """
    if not (KEY_MIN <= key <= KEY_MAX):
        raise ValueError(f"the key must be in {KEY_MIN}..{KEY_MAX}, got {key}")
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"the depth must be in [0, 1], got {depth}")
    x, y = prompt_counts(length, depth, key)
    return make_prompt_parts(x, y, key), f" {key}."


def prompt_counts(length, depth, key):
    """(x, y): the filler repeats before and after the key line (see make_prompt)."""
    n = filler_counts(length, key)
    if n is None:
        raise ValueError(f"a prompt with key {key} needs at least "
                         f"{len(make_prompt_parts(0, 0, key))} characters, asked for {length}")
    x = int(round(depth * n))
    return x, n - x


def make_prompt_parts(x, y, key):
    """The prompt with x filler repeats before the key line and y after it."""
    return "".join(prompt_pieces(x, y, key))


def prompt_pieces(x, y, key):
    """The same prompt as make_prompt_parts, in pieces of at most one sentence: a 1M-character
    prompt can be streamed without ever being held in memory whole."""
    def filler(n):                          # n repeats on one line, after a newline
        for i in range(n):
            yield (" " if i else "\n") + FILLER
    yield INTRO
    yield from filler(x)
    yield "\n" + KEY_LINE.format(key=key)
    yield from filler(y)
    yield "\n" + QUESTION


def prompt_length(x, y, key):
    """len(make_prompt_parts(x, y, key)), without building it: the three fixed parts, two
    newlines, and each filler repeat with its separator (a newline or a space)."""
    fixed = len(INTRO) + len(KEY_LINE.format(key=key)) + len(QUESTION) + 2
    return fixed + (x + y) * (len(FILLER) + 1)


def parse_answer(text):
    """The number a continuation gives: its leading run of digits after optional spaces
    (" 9054." -> 9054, " 90544" -> 90544), or None when it starts with no number."""
    m = re.match(r"\s*(\d+)", text)
    return int(m.group(1)) if m else None


def is_correct(text, key):
    """Exact match: the continuation's number is the key, no digit more, no digit less."""
    return parse_answer(text) == key


# -----------------------------------------------------------------------------
# training data: short prompts, the loss on the answer (and, lighter, on every other token)


def make_batch(rng, batch_size, n_max, ans_weight, lm_weight, shift_max=0, short_keys=0.0, key_last=0.0):
    """A batch of training prompts with their answers: idx, targets (B,T) and loss weights (B,T).

    All prompts of a batch share n = x + y filler repeats, drawn in 0..n_max; each has its
    own key (1..50000) and depth (0..1). Shorter rows (keys with fewer digits) are padded on
    the right with target -1: a causal model never sees the padding. The answer " 9054." and
    the key's second occurrence in its line ("Remember it. 9054 ") get weight ans_weight per
    character, every other character lm_weight (0: no loss there). With shift_max > 0 each
    prompt starts after 0..shift_max newlines (weight 0), so that the answer and the question
    meet every alignment in their segment, not only those of the training lengths. A fraction
    short_keys of the keys is drawn from 1000..9999 (4 digits) instead, and a fraction key_last
    of the prompts has depth 1 (x = n): the key line right before the question.
    """
    n = int(rng.integers(0, n_max + 1))
    rows = []
    for _ in range(batch_size):
        short = short_keys > 0 and rng.random() < short_keys
        key = int(rng.integers(1000, 10000)) if short else int(rng.integers(KEY_MIN, KEY_MAX + 1))
        last = key_last > 0 and rng.random() < key_last
        x = n if last else int(rng.integers(0, n + 1))                    # depth x / n, else uniform
        prompt, answer = make_prompt_parts(x, n - x, key), f" {key}."
        ids = encode(prompt + answer)
        w = np.full(len(ids) - 1, lm_weight, dtype=np.float32)            # w[t] weighs target ids[t+1]
        second = prompt.index(f". Remember it. {key} ") + len(". Remember it. ")
        w[second - 1:second + len(str(key))] = ans_weight                  # the key's second occurrence + " "
        w[len(prompt) - 1:] = ans_weight                                   # the answer " 9054."
        if shift_max > 0:
            s = int(rng.integers(0, shift_max + 1))
            ids = np.concatenate([np.full(s, STOI["\n"]), ids])
            w = np.concatenate([np.zeros(s, dtype=np.float32), w])
        rows.append((ids, w))
    T = max(len(ids) for ids, _ in rows) - 1
    idx = np.zeros((batch_size, T), dtype=np.int64)
    targets = np.full((batch_size, T), -1, dtype=np.int64)
    weights = np.zeros((batch_size, T), dtype=np.float32)
    for b, (ids, w) in enumerate(rows):
        t = len(ids) - 1
        idx[b, :t], targets[b, :t], weights[b, :t] = ids[:-1], ids[1:], w
        idx[b, t:] = STOI["\n"]
    return idx, targets, weights


def weighted_loss_and_grads(params, idx, targets, weights, cfg, attention=infini.PLAIN_ATTENTION):
    """Cross-entropy averaged with per-token weights, its gradients, and the answer's
    per-character accuracy (teacher forced) where weights are largest.

    infini.loss_and_grads takes the plain mean; here the loss is sum(w * ce) / sum(w), so the
    few answer characters can count more than the long filler around them.
    """
    xp = infini.get_array_module(params["wte"])
    logits, cache = infini.model_forward(params, xp.asarray(idx), cfg, attention)  # (B,T,V)
    loss, c_ce = infini.cross_entropy_forward(logits, xp.asarray(targets), xp.asarray(weights))
    grads = infini.model_backward(infini.cross_entropy_backward(1.0, c_ce), cache, cfg)
    ans = weights >= weights.max()
    correct = (infini.to_numpy(logits.argmax(axis=-1)) == infini.to_numpy(targets)) & ans
    return float(loss), grads, float(correct.sum() / ans.sum())


def memory_penalty(key_strength, key_margin, query_strength=0.0, query_margin=0.0, closed_heads=True,
                   prefill=None):
    """The Infini-attention layer with penalties on its memory's keys and queries, as an attention pair.

    Adds key_strength * mean(relu(k + key_margin)) over the keys k = h @ wk of each layer to
    the loss, and query_strength * mean(relu(q + query_margin)) over its queries q = h @ wq
    (their gradients only; the values are not reported). The forward pass is the plain one.
    With closed_heads=False only the heads whose memory is open count (gate logit above
    CLOSED_GATE / 2; the mean still divides by every key of the layer): a closed head's
    memory is never read, and keys pushed below -margin only saturate its local attention,
    where rope turns keys that large into logits set by the distance more than by the content.

    Keys: a filler token whose key sits below -margin writes almost nothing into z and M:
    sigma(k) = e^k. At 32x the training length the filler outnumbers the key line 32x more
    than in training, so its writes must be that much smaller than the training loss alone
    asks for; the penalty pushes every key that the loss does not need below -margin.
    Queries: the read sigma(q) M / (sigma(q) z) weighs each of a head's D dimensions by
    sigma(q). A few filler characters keep large keys in some dimension (the loss uses them),
    and an answer query that is small there but not tiny (q = -2, sigma(q) = 0.1) still reads
    them, once per filler repeat. The query penalty pushes every such dimension below -margin.
    prefill: a dict layer -> (M, z), the memory each prompt starts from (far_memory; train_model
    fills it anew for every batch); a layer not in it starts empty.
    """
    def forward(h, p, l, cfg):
        out, cache = infini.attention_forward(h, p, l, cfg, None if prefill is None else prefill.get(l))
        beta = p.get(f"h.{l}.beta")                                        # (H,) gate logits; none has none
        open_heads = None if closed_heads or beta is None else beta > CLOSED_GATE / 2  # None: every head
        return out, (cache, open_heads)

    def backward(dout, cache, cfg):
        cache, open_heads = cache
        dh, dwq, dwk, dwv, dwo, dbeta = infini.attention_backward(dout, cache, cfg)
        if cfg.memory == "none" or (open_heads is not None and not bool(open_heads.any())):
            return dh, dwq, dwk, dwv, dwo, dbeta
        columns = None if open_heads is None else infini.get_array_module(dout).repeat(open_heads, cfg.head_size)
        dh_k, dwk_pen = penalty_backward(cache["k"], cache["c_k"], key_strength, key_margin, columns)
        dh_q, dwq_pen = penalty_backward(cache["q"], cache["c_q"], query_strength, query_margin, columns)
        return dh + dh_k + dh_q, dwq + dwq_pen, dwk + dwk_pen, dwv, dwo, dbeta

    def penalty_backward(a, c_matmul, strength, margin, columns):
        # d/d(h, w) of strength * mean(relu(a + margin)), a = h @ w (B,T,C): the matmul's backward of its step
        if strength <= 0:
            return 0.0, 0.0
        step = a > -margin
        if columns is not None:                                            # (C,): the open heads' columns only
            step &= columns
        return infini.matmul_backward(step.astype(a.dtype) * (strength / a.size), c_matmul)
    return forward, backward


FILL_EVERY = 20  # the tune phase measures the filler's memory (filler_memory) again every 20 steps


def filler_memory(params, cfg):
    """What filler alone leaves in each layer's memory: [(M, z per character)], n. Streams
    one cycle of the filler against the segments (n = lcm(90, segment_len) characters: every
    alignment of a filler repeat in its segment once), one prompt, no gradients."""
    step = len(FILLER) + 1
    n = math.lcm(step, cfg.segment_len)
    xp = infini.get_array_module(params["wte"])
    ids = xp.asarray(encode((" " + FILLER) * (n // step)))[None]
    _, state = infini.forward_stream(params, ids, infini.init_state(params, cfg, 1), cfg)  # segment by segment
    return [(M[0], z[0] / n) for M, z in zip(state["M"], state["z"])], n


def far_memory(filler, n, rng, batch_size, far_fill, rule):
    """The memory a batch starts from, as if F characters of filler came before each prompt:
    a dict layer -> (M, z) for memory_penalty's prefill. 3/4 of the prompts draw F log-uniform
    in n..far_fill, the others start empty (F = 0). z grows with every filler character, so
    z = F * (z per character); M grows likewise under the linear rule, while the delta rule
    writes only what M does not already return, so its M after one cycle stands for any F.

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


# -----------------------------------------------------------------------------
# evaluation through the streaming state: bounded memory at any length

MAX_NEW = 7  # " " + 5 digits + one more: a key with a digit too many is seen and counted wrong


def text_chunks(pieces, size):
    """Cut a stream of text pieces into chunks of `size` characters (the last may be shorter)."""
    buf = ""
    for piece in pieces:
        buf += piece
        whole = len(buf) // size * size                                    # one cut per piece, not per
        for i in range(0, whole, size):                                    #   chunk: a long string is
            yield buf[i:i + size]                                          #   copied once, not per chunk
        buf = buf[whole:]
    if buf:
        yield buf


def generate_batch(params, cfg, prompts, chunk=512, max_new=MAX_NEW):
    """Greedy continuations of equally long prompts, all streamed at once in one state.

    prompts: list of B prompts of the same length, each a string or an iterable of text
    pieces (prompt_pieces), so that no prompt is ever held whole. They are fed in chunks of
    `chunk` characters (forward_stream cuts them at segment boundaries), then max_new
    characters are generated one at a time. Returns B strings.
    """
    xp = infini.get_array_module(params["wte"])
    B = len(prompts)
    table = np.zeros(256, dtype=np.uint8)
    for ch, i in STOI.items():
        table[ord(ch)] = i
    state = infini.init_state(params, cfg, B)
    streams = [text_chunks([p] if isinstance(p, str) else p, chunk) for p in prompts]
    for pieces in itertools.zip_longest(*streams, fillvalue=""):          # one chunk of every prompt
        if any(len(s) != len(pieces[0]) for s in pieces):
            raise ValueError("a streamed batch needs prompts of one length")
        ids = table[np.frombuffer("".join(pieces).encode("ascii"), dtype=np.uint8)].reshape(B, -1)
        logits, state = infini.forward_stream(params, xp.asarray(ids.astype(np.int64)), state, cfg)
    out = []
    for _ in range(max_new):
        nxt = logits[:, -1].argmax(axis=-1)                                # (B,) greedy
        out.append(infini.to_numpy(nxt))
        logits, state = infini.forward_stream(params, nxt[:, None], state, cfg)
    gen = np.stack(out, axis=1)                                            # (B,max_new)
    return [decode(row) for row in gen]


def digit_accuracy(text, key):
    """The share of the key's digits that the continuation has right, place by place."""
    got, want = text.lstrip(" "), str(key)
    return sum(a == b for a, b in zip(got, want)) / len(want)


def evaluate(params, cfg, lengths, depths, n_per_depth, seed=0, batch_size=32, chunk=512, progress=None):
    """Exact-match accuracy (%) and per-digit accuracy (%) for every length and depth.

    Each (length, depth) gets n_per_depth random keys drawn from seed and the length. The
    prompts of one length with the same number of key digits have the same number of
    characters whatever their depth, so they are streamed together in batches.
    Returns {length: {depth: {"exact": %, "digits": %, "samples": [...]}}}.
    """
    results = {}
    for length in lengths:
        rng = np.random.default_rng([seed, length])
        keys = rng.integers(KEY_MIN, KEY_MAX + 1, size=(len(depths), n_per_depth))
        jobs = sorted(((len(str(k)), di, int(k)) for di, row in enumerate(keys) for k in row))
        hits = {di: [] for di in range(len(depths))}
        digits = {di: [] for di in range(len(depths))}
        samples = {di: [] for di in range(len(depths))}
        groups = {}
        for nd, di, k in jobs:
            groups.setdefault(nd, []).append((di, k))
        for nd, group in groups.items():
            for b0 in range(0, len(group), batch_size):
                batch = group[b0:b0 + batch_size]
                counts = [prompt_counts(length, depths[di], k) + (k,) for di, k in batch]
                prompts = [prompt_pieces(*xyk) for xyk in counts]         # streamed, never built whole
                for (di, k), text in zip(batch, generate_batch(params, cfg, prompts, chunk)):
                    hits[di].append(is_correct(text, k))
                    digits[di].append(digit_accuracy(text, k))
                    if len(samples[di]) < 3:
                        samples[di].append(f"{k} -> {text!r}")
                if progress is not None:
                    progress(len(batch) * (prompt_length(*counts[0]) + MAX_NEW))
        results[length] = {depths[di]: {"exact": 100.0 * float(np.mean(hits[di])),
                                        "digits": 100.0 * float(np.mean(digits[di])),
                                        "samples": samples[di]} for di in range(len(depths))}
    return results


def answer_mask(targets, weights):
    """(B,T) bool: the answer's characters " 9054." in a make_batch batch, the last run of
    positions with the largest weight in each row (the key's second occurrence, weighted
    alike, sits earlier in the prompt and is left out)."""
    valid = targets >= 0
    top = (weights >= weights.max()) & valid
    last = valid.sum(axis=1) - 1                                           # each row's last target
    mask = np.zeros_like(top)
    for b, t in enumerate(last):
        while t >= 0 and top[b, t]:
            mask[b, t] = True
            t -= 1
    return mask


def greedy_predictions(params, cfg, idx, chunk=512):
    """(B,T) the likeliest next token after each position of idx (B,T), streamed through the
    state in chunks (the memory stays bounded, as in evaluate)."""
    xp = infini.get_array_module(params["wte"])
    state = infini.init_state(params, cfg, len(idx))
    pred = []
    for t0 in range(0, idx.shape[1], chunk):
        logits, state = infini.forward_stream(params, xp.asarray(idx[:, t0:t0 + chunk]), state, cfg)
        pred.append(infini.to_numpy(logits.argmax(axis=-1)))
    return np.concatenate(pred, axis=1)


def offset_accuracy(params, cfg, n_max, batches=40, batch_size=16, seed=0):
    """Teacher-forced accuracy (%) of the answer's characters, by the position in its segment
    of the character the model reads when it predicts each (0..segment_len-1), on training
    prompts of up to n_max filler repeats, each after 0..segment_len-1 newlines (so that the
    answer meets every position). A character at position 0 or 1 sees at most two characters
    through local attention: the rest must come from the memory. -> (accuracy list, count
    list), one entry per position (None where no answer character fell)."""
    rng = np.random.default_rng(seed)
    N = cfg.segment_len
    hits, counts = np.zeros(N), np.zeros(N)
    for _ in range(batches):
        idx, targets, weights = make_batch(rng, batch_size, n_max, 1.0, 0.0, N - 1)
        pred = greedy_predictions(params, cfg, idx)
        b, t = np.nonzero(answer_mask(targets, weights))
        np.add.at(counts, t % N, 1)
        np.add.at(hits, t % N, pred[b, t] == targets[b, t])
    acc = [100.0 * h / n if n else None for h, n in zip(hits, counts)]
    return acc, counts.astype(int).tolist()


# -----------------------------------------------------------------------------
# training


def get_lr(step, c):
    """Linear warmup to learning_rate, then cosine decay to min_lr at max_iters; the tune phase
    after it starts again, from tune_lr (warmup_iters) to tune_min_lr at max_iters + tune_iters."""
    if step >= c["max_iters"]:
        return infini.cosine_lr(step - c["max_iters"], c["tune_lr"], c["tune_min_lr"], c["warmup_iters"],
                                c["tune_iters"])
    return infini.cosine_lr(step, c["learning_rate"], c["min_lr"], c["warmup_iters"], c["max_iters"])


def n_max_at(step, c):
    """Curriculum: the most filler repeats a training prompt may have at this step."""
    long_from = c["max_iters"] - c["long_iters"]
    if step >= c["max_iters"]:                                             # the tune phase
        return max(c["n_long"], c["n_end"]) if c["long_iters"] > 0 else c["n_end"]
    if step >= long_from and c["long_iters"] > 0:                          # the long phase
        frac = (step - long_from + 1) / c["long_iters"]
        return int(round(c["n_end"] + frac * (max(c["n_long"], c["n_end"]) - c["n_end"])))
    frac = min(1.0, step / max(1, c["curriculum_iters"]))
    return int(round(c["n_start"] + frac * (c["n_end"] - c["n_start"])))


def batch_size_at(step, c):
    return c["long_batch_size"] if c["long_iters"] > 0 and step >= c["max_iters"] - c["long_iters"] else c["batch_size"]


def total_iters(c):
    return c["max_iters"] + c["tune_iters"]


def train_len(c):
    """The longest training input, in characters: the most repeats, a 5-digit key, shift_max newlines."""
    n = max(n_max_at(step, c) for step in {0, c["curriculum_iters"], max(0, total_iters(c) - 1)})
    return len(make_prompt_parts(n, 0, KEY_MAX)) + c["shift_max"]


def model_config(c, mode):
    return infini.Config(vocab_size=VOCAB_SIZE, n_layer=c["n_layer"], n_head=c["n_head"], d_model=c["d_model"],
                         segment_len=c["segment_len"], memory=mode, beta_init=c["beta_init"], rope_base=c["rope_base"])


def train_model(c, mode, folder):
    """Train (or resume) one model in folder/ckpt.npz. -> params, cfg, meta."""
    ckpt_path, log_path = os.path.join(folder, "ckpt.npz"), os.path.join(folder, "log.jsonl")
    if c["init_from"] == "resume":
        params, opt, meta = checkpoint.load_checkpoint(ckpt_path)
        if opt is None:
            raise checkpoint.CheckpointError(f"{ckpt_path} has no optimiser state to resume from")
        c.update({k: meta["config"][k] for k in DEFAULTS if k in meta["config"] and k not in
                  ("init_from", "train", "out_dir", "memory", "device", "eval_lengths", "eval_depths",
                   "eval_samples", "eval_batch_size")})
        step = meta["step"]
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
    elif mode == "delta" and c["delta_from_linear"]:                      # the tune phase alone, from linear
        params, step = warm_start(c, os.path.join(c["out_dir"], "linear", "model.npz")), c["max_iters"]
    else:
        params, step = init_model(c, mode), 0
    if c["init_from"] != "resume":
        opt, rng = infini.adamw_init(params), np.random.default_rng(c["seed"])
        for name in ("ckpt.npz", "model.npz", "log.jsonl"):               # --overwrite=True: a new run
            if os.path.exists(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))
    cfg = model_config(c, mode)
    params, opt = infini.to_device(infini.backend(c["device"]), params, opt)  # (a CPU checkpoint runs on a GPU)

    def save():
        meta = {"config": c, "model": {**vars(cfg)}, "step": step, "rng": rng.bit_generator.state,
                "train_len": train_len(c), "vocab": "".join(CHARS),
                "tokenizer": {"kind": "char", "itos": list(CHARS)}}  # what sample.py reads
        checkpoint.save_checkpoint(ckpt_path, params, opt, meta)

    print(f"[{mode}] {infini.num_params(params):,} parameters, {cfg.n_layer} layers, {cfg.n_head} heads, "
          f"d_model {cfg.d_model}, segment {cfg.segment_len}; training inputs up to {train_len(c)} characters")
    if step >= total_iters(c):
        print(f"[{mode}] {ckpt_path} finished its {step} steps: evaluating it")
        return params, cfg, {"train_len": train_len(c), "step": step}
    prefill, filler = {}, None                                            # far_fill's memory (far_memory)
    train_attention = memory_penalty(c["key_penalty"], c["key_margin"], closed_heads=c["penalize_closed"])
    tune_attention = memory_penalty(c["key_penalty"], c["key_margin"], c["query_penalty"], c["query_margin"],
                                    closed_heads=c["penalize_closed"], prefill=prefill)
    losses, accs = [], []
    bar = tqdm(total=total_iters(c), initial=step, desc=f"train {mode}", unit="step", dynamic_ncols=True)
    with bar:
        while step < total_iters(c):
            tuning = step >= c["max_iters"]
            if step == c["max_iters"]:                                     # the tune phase: a fresh optimiser
                opt = infini.adamw_init(params)
            lr = get_lr(step, c)
            shift = c["shift_max"] if step >= c["shift_from"] else 0
            late = step >= c["curriculum_iters"]                          # short keys after the curriculum
            idx, targets, weights = make_batch(rng, batch_size_at(step, c), n_max_at(step, c),
                                               c["answer_weight"], c["lm_weight"], shift,
                                               c["short_keys"] if late else 0.0, c["key_last"] if late else 0.0)
            if tuning and c["far_fill"] and mode != "none":
                if filler is None or step % FILL_EVERY == 0:
                    filler = filler_memory(params, cfg)
                prefill.update(far_memory(*filler, rng, len(idx), c["far_fill"], mode))
            loss, grads, acc = weighted_loss_and_grads(params, idx, targets, weights, cfg,
                                                       tune_attention if tuning else train_attention)
            norm = infini.clip_grad_norm(grads, c["grad_clip"])
            if not (math.isfinite(loss) and math.isfinite(norm)):
                raise FloatingPointError(f"the loss is {loss} at step {step}: try a lower --learning_rate")
            infini.adamw_step(params, grads, opt, lr, weight_decay=c["weight_decay"], beta_lr_mult=c["beta_lr_mult"])
            step += 1
            losses.append(loss)
            accs.append(acc)
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", answer_acc=f"{np.mean(accs[-50:]):.2f}",
                                n_max=n_max_at(step, c))
            if step % 100 == 0 or step in (c["max_iters"], total_iters(c)):
                with open(log_path, "a") as f:
                    f.write(json.dumps({"step": step, "loss": float(np.mean(losses[-100:])),
                                        "answer_acc": float(np.mean(accs[-100:])), "lr": lr,
                                        "n_max": n_max_at(step, c)}) + "\n")
                save()
    export_model(ckpt_path, os.path.join(folder, "model.npz"))
    return params, cfg, {"train_len": train_len(c), "step": step}


def init_model(c, mode):
    """Fresh weights, with the gates shut (CLOSED_GATE) outside the memory layers and heads."""
    params = infini.init_params(model_config(c, mode), seed=c["seed"])
    last = c["n_layer"] - c["local_layers"]               # the memory layers: last - memory_layers .. last - 1
    for l in range(c["n_layer"]):
        if f"h.{l}.beta" in params:                                        # (none has no gates)
            if not last - c["memory_layers"] <= l < last:
                params[f"h.{l}.beta"][:] = CLOSED_GATE
            elif c["memory_heads"]:
                params[f"h.{l}.beta"][c["memory_heads"]:] = CLOSED_GATE
    return params


def warm_start(c, path):
    """The weights of a trained linear model, to train on with the delta rule (same shape, same gates)."""
    if not os.path.exists(path):
        raise checkpoint.CheckpointError(f"--delta_from_linear: no {path}: train it first (--memory=linear, "
                                         f"same out_dir) or set --delta_from_linear=False")
    params, cfg, _ = load_model(path)
    if cfg.memory != "linear" or {**vars(cfg), "memory": "delta"} != vars(model_config(c, "delta")):
        raise checkpoint.CheckpointError(f"--delta_from_linear: {path} is not a linear model of these "
                                         f"settings ({cfg}): train linear with the same settings")
    return params


def export_model(ckpt_path, path):
    """The trained model alone (no optimiser state, a third of the size): what passkey_ckpt/ ships."""
    params, _, meta = checkpoint.load_checkpoint(ckpt_path)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version", "rng")}
    checkpoint.save_checkpoint(path, params, None, meta)


def load_model(path, device="cpu"):
    """A trained passkey model: params (on the device), cfg, meta (from checkpoint.py's .npz)."""
    params, cfg, meta = checkpoint.load_model(path, device)
    if meta.get("vocab") != "".join(CHARS):
        raise checkpoint.CheckpointError(f"{path} is not a passkey model (another vocabulary)")
    return params, cfg, meta


# -----------------------------------------------------------------------------
# reporting: the paper-style table, results.json and a depth x length heat-map

NAMED_DEPTHS = {"start": 0.0, "middle": 0.5, "end": 1.0}


def table(rows, lengths):
    """Markdown table: one row per memory, one column per length, 'start/middle/end' in %."""
    head = "| memory | " + " | ".join(f"{n:,}" for n in lengths) + " |"
    lines = [head, "|---" * (len(lengths) + 1) + "|"]
    for mode, res in rows.items():
        cells = ["/".join(f"{res[str(n)][d]:.0f}" for d in NAMED_DEPTHS) for n in lengths]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def heatmap(grid, depths, lengths, title, path):
    """grid (depths, lengths) of exact-match % as an image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(lengths), 1.0 + 0.6 * len(depths)))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for i in range(len(depths)):
        for j in range(len(lengths)):
            ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(lengths)), [f"{n:,}" for n in lengths], rotation=30)
    ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
    ax.set_xlabel("prompt length (characters)")
    ax.set_ylabel("key depth (0 start, 1 end)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="exact match %")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def describe_offsets(acc, below=95.0):
    """'0: 67%, 1: 72%, 2: 94%, the other 29: 98-100%': the positions under `below` one by one
    (or only how many, when there are more than six)."""
    low = [f"{i}: {a:.0f}%" for i, a in enumerate(acc) if a is not None and a < below]
    rest = [a for a in acc if a is not None and a >= below]
    if len(low) > 6:
        seen = [a for a in acc if a is not None]
        return f"{len(low)} of {len(seen)} positions under {below:.0f}% (mean {np.mean(seen):.0f}%)"
    if rest:
        span = f"{min(rest):.0f}" if round(min(rest)) == round(max(rest)) else f"{min(rest):.0f}-{max(rest):.0f}"
        low.append(f"the other {len(rest)}: {span}%")
    return ", ".join(low)


def parse_list(text, kind, key):
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--{key} takes comma-separated numbers, got {text!r}") from None


def run_mode(c, mode):
    """Train or load one model, evaluate it, write results.json and heatmap.png. -> results dict."""
    folder = os.path.join(c["out_dir"], mode)
    if c["init_from"] == "shipped":
        path = os.path.join(SHIPPED, f"{mode}.npz")
        if not os.path.exists(path):
            raise checkpoint.CheckpointError(f"no shipped checkpoint {path}: train one with --train")
        params, cfg, meta = load_model(path, c["device"])
        print(f"[{mode}] loaded {os.path.relpath(path, ROOT)} ({meta['step']} steps, training inputs up to "
              f"{meta['train_len']} characters)")
    else:  # scratch, or resume: go on to the checkpoint's max_iters (a finished model is only evaluated)
        params, cfg, meta = train_model(dict(c), mode, folder)
    tlen = meta["train_len"]
    lengths = parse_list(c["eval_lengths"], int, "eval_lengths") or [tlen * k for k in (1, 2, 4, 8, 16, 32)]
    depths = sorted(set(parse_list(c["eval_depths"], float, "eval_depths")) | set(NAMED_DEPTHS.values()))
    total = sum(len(depths) * c["eval_samples"] * (n + MAX_NEW) for n in lengths)
    t0 = time.time()
    with tqdm(total=total, desc=f"eval {mode}", unit="char", unit_scale=True, dynamic_ncols=True) as bar:
        res = evaluate(params, cfg, lengths, depths, c["eval_samples"], seed=c["seed"],
                       batch_size=c["eval_batch_size"], progress=bar.update)
    seconds = time.time() - t0
    offsets, offset_counts = offset_accuracy(params, cfg, filler_counts(tlen, KEY_MAX), seed=c["seed"])
    out = {"memory": mode, "train_len": tlen,
           "results": {str(n): {name: res[n][d]["exact"] for name, d in NAMED_DEPTHS.items()} for n in lengths},
           "digit_accuracy": {str(n): {name: res[n][d]["digits"] for name, d in NAMED_DEPTHS.items()}
                              for n in lengths},
           "by_depth": {str(n): {f"{d:g}": res[n][d]["exact"] for d in depths} for n in lengths},
           "samples": {str(n): {f"{d:g}": res[n][d]["samples"] for d in depths} for n in lengths},
           "offset_accuracy": offsets, "offset_counts": offset_counts,
           "keys_per_depth": c["eval_samples"], "eval_seconds": round(seconds, 1),
           "eval_chars_per_sec": round(total / seconds)}
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(out, f, indent=1)
    grid = np.array([[res[n][d]["exact"] for n in lengths] for d in depths])
    heatmap(grid, depths, lengths, f"passkey, memory {mode!r} (trained on <= {tlen:,} chars)",
            os.path.join(folder, "heatmap.png"))
    print(f"[{mode}] exact match % (start/middle/end), {c['eval_samples']} keys each; "
          f"per-digit accuracy in results.json")
    print(table({mode: out["results"]}, lengths))
    print(f"[{mode}] per-digit accuracy % (start/middle/end):")
    print(table({mode: out["digit_accuracy"]}, lengths))
    print(f"[{mode}] answer characters predicted right (teacher-forced, training-length prompts), by where "
          f"the character read sits in its segment: {describe_offsets(offsets)}")
    print(f"[{mode}] streamed {total:,} characters in {seconds:.0f} s ({total / seconds:,.0f} chars/s, "
          f"{c['eval_batch_size']} prompts at once): a 1M-character prompt takes about "
          f"{1e6 * min(c['eval_batch_size'], len(depths) * c['eval_samples']) / (total / seconds):.0f} s "
          f"per batch. Outputs in {folder}/: results.json, heatmap.png")
    return out


def validate(c):
    for key in ("n_layer", "n_head", "d_model", "segment_len", "batch_size", "long_batch_size", "eval_samples",
                "eval_batch_size", "memory_layers"):
        if c[key] < 1:
            raise ValueError(f"--{key} must be at least 1, got {c[key]}")
    for key in ("max_iters", "learning_rate", "min_lr", "warmup_iters", "weight_decay", "grad_clip",
                "beta_lr_mult", "n_start", "n_end", "curriculum_iters", "long_iters", "n_long", "answer_weight",
                "lm_weight", "key_penalty", "key_margin", "tune_iters", "tune_lr", "tune_min_lr", "query_penalty",
                "query_margin", "seed", "shift_max", "shift_from", "memory_heads", "local_layers", "far_fill"):
        if c[key] < 0:
            raise ValueError(f"--{key} must not be negative, got {c[key]}")
    if c["memory_heads"] > c["n_head"]:
        raise ValueError(f"--memory_heads must be at most --n_head ({c['n_head']}), got {c['memory_heads']}")
    if c["local_layers"] >= c["n_layer"]:
        raise ValueError(f"--local_layers must be less than --n_layer ({c['n_layer']}), got {c['local_layers']}")
    if c["answer_weight"] == 0:
        raise ValueError("--answer_weight must be positive")
    for key in ("short_keys", "key_last"):
        if not 0 <= c[key] <= 1:
            raise ValueError(f"--{key} is a fraction: it must lie in [0, 1], got {c[key]}")
    cycle = math.lcm(len(FILLER) + 1, c["segment_len"])
    if 0 < c["far_fill"] < cycle:
        raise ValueError(f"--far_fill must be 0 (off) or at least one filler cycle ({cycle} characters with "
                         f"segments of {c['segment_len']}), got {c['far_fill']}")
    choices = {"memory": MODES + ("all",), "init_from": ("shipped", "scratch", "resume"),
               "device": ("cpu", "cuda", "auto")}
    for key, allowed in choices.items():
        if c[key] not in allowed:
            raise ValueError(f"--{key} must be one of {', '.join(allowed)}; got {c[key]!r}")
    lengths = parse_list(c["eval_lengths"], int, "eval_lengths")
    shortest = len(make_prompt_parts(0, 0, KEY_MAX))
    if any(n < shortest for n in lengths):
        raise ValueError(f"--eval_lengths: a prompt needs at least {shortest} characters")
    if any(not 0 <= d <= 1 for d in parse_list(c["eval_depths"], float, "eval_depths")):
        raise ValueError("--eval_depths must lie in [0, 1]")
    model_config(c, "delta")  # the model's own checks (d_model divisible by n_head, ...)


def main(c):
    parallel.keep_freed_memory()  # large temporaries reuse freed memory (kernels/parallel.py)
    if c["train"]:
        c["init_from"] = "scratch"
    modes = MODES if c["memory"] == "all" else (c["memory"],)
    t0 = time.time()
    rows = {}
    try:
        c["device"] = infini.device_name(infini.backend(c["device"]))     # "auto": cuda if CuPy finds a GPU
        created = []  # every folder a training writes is checked before the first one starts
        if c["init_from"] != "shipped":
            for mode in modes:
                created += checkpoint.claim_out_dir(os.path.join(c["out_dir"], mode),
                                                    resume=c["init_from"] == "resume", overwrite=c["overwrite"])
    except ValueError as e:                        # --device=cuda without a GPU; an out_dir that cannot be
        print(f"error: {e}", file=sys.stderr)      # written or holds a trained run
        return 2
    try:
        for mode in modes:
            rows[mode] = run_mode(c, mode)
    except (checkpoint.CheckpointError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        checkpoint.remove_if_empty(created)
    if len(rows) > 1:
        lengths = sorted(set.intersection(*(set(map(int, r["results"])) for r in rows.values())))
        print(f"\npasskey retrieval, exact match % with the key at start/middle/end "
              f"({c['eval_samples']} keys each, greedy decoding):")
        print(table({m: r["results"] for m, r in rows.items()}, lengths))
    print(f"done in {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main(configurator.apply(dict(DEFAULTS), sys.argv[1:], validate, __doc__)))
