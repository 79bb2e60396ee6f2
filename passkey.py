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
    python passkey.py --train               # train the three from scratch (~13-16 min each on 2 CPU cores;
                                            #   the shipped none.npz had --max_iters=600 --curriculum_iters=300
                                            #   --long_iters=100: local attention alone cannot reach the key)
    python passkey.py --train --memory=delta --out_dir=out-mine
    python passkey.py --init_from=resume --memory=delta --eval_lengths=2405,1000000 --eval_depths=0,0.5,1

Outputs go to out_dir/<memory>/: results.json (exact match % per length and depth, and the
per-digit accuracy), heatmap.png (depth x length), and for a training run ckpt.npz (resumable
with --init_from=resume), model.npz (the weights alone) and log.jsonl.

What makes it train (each found by trying; see the settings below):
- the loss sits on the answer " 9054." and on the key's second occurrence in its own line
  ("Remember it. 9054 is"), at weight 1; every other character has weight 0.02;
- the gates are fixed at sigmoid(1) = 0.73 (beta_init = 1, beta_lr_mult = 0): with learned
  gates the last layer closes its memory (g -> 0.01) before retrieval is learned, and the
  model settles for a bag of digits read by the first layer's memory;
- a curriculum over length: 0 filler repeats at first, up to 8 after 2000 steps, then up
  to 24 (2,405 characters, 75 segments of 32) for the last 500 steps.
Evaluation streams all prompts of one length with the same number of key digits together
(equal lengths whatever the depth), segment by segment, then decodes greedily.
"""
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

# settings: plain variables, overridden by a config file or --key=value (configurator.py)

out_dir = "out-passkey"    # out_dir/<memory>/: ckpt.npz, model.npz, log.jsonl, results.json, heatmap.png
memory = "all"             # "none", "linear", "delta", or "all": the three, one after another
init_from = "shipped"      # "shipped": the trained models in passkey_ckpt/<memory>.npz (copies of
                           #   out_dir/<memory>/model.npz from --train): no training;
                           # "scratch": train a new model; "resume": out_dir/<memory>/ckpt.npz, trained
                           #   on to its max_iters if it was interrupted, then evaluated
train = False              # --train is short for --init_from=scratch (reproduce the shipped models)
# model
n_layer = 2
n_head = 4
d_model = 64
segment_len = 32           # N: short segments, so a prompt of a few hundred characters spans many
# training: short prompts; the answer (and the key's second occurrence) carries the loss
max_iters = 3500
batch_size = 16
learning_rate = 1e-2       # a tiny model: a high rate, decayed (cosine) to min_lr at max_iters
min_lr = 3e-4
warmup_iters = 50
weight_decay = 0.0
grad_clip = 1.0
beta_init = 1.0            # gate logits start at sigmoid(1) = 0.73: mostly memory, in every layer
beta_lr_mult = 0.0         # and stay there: learned gates close the memory of the last layer
                           #   before it has learned to retrieve (its reads start as noise)
n_start = 0                # curriculum: a batch's prompts have n filler repeats, n drawn in 0..n_max,
n_end = 8                  #   n_max growing from n_start to n_end over the first curriculum_iters steps
curriculum_iters = 2000
long_iters = 500           # then the last long_iters steps: n_max grows on to n_long,
n_long = 24                #   long_batch_size prompts per batch
long_batch_size = 8
answer_weight = 1.0        # loss weight of each answer character (and of the key's second occurrence)
lm_weight = 0.02           # loss weight of every other character
# evaluation
eval_lengths = ""          # comma-separated prompt lengths in characters; "": 1x to 32x the longest training prompt
eval_depths = "0,0.25,0.5,0.75,1"  # key depths: 0 start, 0.5 middle, 1 end
eval_samples = 10          # keys per depth and length
eval_batch_size = 50       # prompts streamed together in one state
seed = 1337
# -----------------------------------------------------------------------------
DEFAULTS = configurator.defaults(globals())
MODES = ("none", "linear", "delta")
ROOT = os.path.dirname(os.path.abspath(__file__))
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
    base = len(INTRO) + len(KEY_LINE.format(key=key)) + len(QUESTION) + 2  # two newlines
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
    n = filler_counts(length, key)
    if n is None:
        raise ValueError(f"a prompt with key {key} needs at least "
                         f"{len(make_prompt_parts(0, 0, key))} characters, asked for {length}")
    x = int(round(depth * n))
    return make_prompt_parts(x, n - x, key), f" {key}."


def make_prompt_parts(x, y, key):
    """The prompt with x filler repeats before the key line and y after it."""
    parts = [INTRO]
    if x:
        parts.append(" ".join([FILLER] * x))
    parts.append(KEY_LINE.format(key=key))
    if y:
        parts.append(" ".join([FILLER] * y))
    parts.append(QUESTION)
    return "\n".join(parts)


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


def make_batch(rng, batch_size, n_max, ans_weight, lm_weight):
    """A batch of training prompts with their answers: idx, targets (B,T) and loss weights (B,T).

    All prompts of a batch share n = x + y filler repeats, drawn in 0..n_max; each has its
    own key (1..50000) and depth (0..1). Shorter rows (keys with fewer digits) are padded on
    the right with target -1: a causal model never sees the padding. The answer " 9054." and
    the key's second occurrence in its line ("Remember it. 9054 ") get weight ans_weight per
    character, every other character lm_weight (0: no loss there).
    """
    n = int(rng.integers(0, n_max + 1))
    rows = []
    for _ in range(batch_size):
        key = int(rng.integers(KEY_MIN, KEY_MAX + 1))
        x = int(rng.integers(0, n + 1))                                    # depth x / n, uniform
        prompt, answer = make_prompt_parts(x, n - x, key), f" {key}."
        ids = encode(prompt + answer)
        w = np.full(len(ids) - 1, lm_weight, dtype=np.float32)            # w[t] weighs target ids[t+1]
        second = prompt.index(f". Remember it. {key} ") + len(". Remember it. ")
        w[second - 1:second + len(str(key))] = ans_weight                  # the key's second occurrence + " "
        w[len(prompt) - 1:] = ans_weight                                   # the answer " 9054."
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


def weighted_loss_and_grads(params, idx, targets, weights, cfg):
    """Cross-entropy averaged with per-token weights, its gradients, and the answer's
    per-character accuracy (teacher forced) where weights are largest.

    infini.loss_and_grads takes the plain mean; here the loss is sum(w * ce) / sum(w), so the
    few answer characters can count more than the long filler around them.
    """
    xp = infini.get_array_module(params["wte"])
    logits, cache = infini.model_forward(params, idx, cfg)                 # (B,T,V)
    V = logits.shape[-1]
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - xp.log(xp.exp(z).sum(axis=-1, keepdims=True))               # (B,T,V)
    tsafe = xp.where(targets >= 0, targets, 0)
    picked = xp.take_along_axis(logp, tsafe[..., None], axis=-1)[..., 0]   # (B,T)
    wsum = float(weights.sum())
    loss = float(-(picked * weights).sum() / wsum)
    dlogits = xp.exp(logp)
    dlogits -= (xp.arange(V) == tsafe[..., None])                          # softmax - onehot
    dlogits *= (weights / wsum)[..., None]
    grads = infini.model_backward(dlogits.astype(logits.dtype), cache, cfg)
    ans = weights >= weights.max()
    correct = (logits.argmax(axis=-1) == targets) & ans
    return loss, grads, float(correct.sum() / ans.sum())


# -----------------------------------------------------------------------------
# evaluation through the streaming state: bounded memory at any length

MAX_NEW = 7  # " " + 5 digits + one more: a key with a digit too many is seen and counted wrong


def generate_batch(params, cfg, prompts, chunk=2048, max_new=MAX_NEW):
    """Greedy continuations of equally long prompts, all streamed at once in one state.

    prompts: list of B strings of the same length. The prompt is fed in chunks of `chunk`
    characters (forward_stream cuts them at segment boundaries), then max_new characters
    are generated one at a time. Returns B strings.
    """
    xp = infini.get_array_module(params["wte"])
    B, T = len(prompts), len(prompts[0])
    assert all(len(p) == T for p in prompts), "a streamed batch needs prompts of one length"
    table = np.zeros(256, dtype=np.uint8)
    for ch, i in STOI.items():
        table[ord(ch)] = i
    ids = table[np.frombuffer("".join(prompts).encode("ascii"), dtype=np.uint8)].reshape(B, T)
    state = infini.init_state(params, cfg, B)
    for t0 in range(0, T, chunk):
        logits, state = infini.forward_stream(params, xp.asarray(ids[:, t0:t0 + chunk].astype(np.int64)),
                                              state, cfg)
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


def evaluate(params, cfg, lengths, depths, n_per_depth, seed=0, batch_size=32, chunk=2048, progress=None):
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
                prompts = [make_prompt(length, depths[di], k)[0] for di, k in batch]
                for (di, k), text in zip(batch, generate_batch(params, cfg, prompts, chunk)):
                    hits[di].append(is_correct(text, k))
                    digits[di].append(digit_accuracy(text, k))
                    if len(samples[di]) < 3:
                        samples[di].append(f"{k} -> {text!r}")
                if progress is not None:
                    progress(len(batch) * (len(prompts[0]) + MAX_NEW))
        results[length] = {depths[di]: {"exact": 100.0 * float(np.mean(hits[di])),
                                        "digits": 100.0 * float(np.mean(digits[di])),
                                        "samples": samples[di]} for di in range(len(depths))}
    return results


# -----------------------------------------------------------------------------
# training


def get_lr(step, c):
    """Linear warmup to learning_rate, then cosine decay to min_lr at max_iters."""
    if step < c["warmup_iters"]:
        return c["learning_rate"] * (step + 1) / (c["warmup_iters"] + 1)
    ratio = min(1.0, (step - c["warmup_iters"]) / max(1, c["max_iters"] - c["warmup_iters"]))
    return c["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (c["learning_rate"] - c["min_lr"])


def n_max_at(step, c):
    """Curriculum: the most filler repeats a training prompt may have at this step."""
    long_from = c["max_iters"] - c["long_iters"]
    if step >= long_from and c["long_iters"] > 0:                          # the last, long phase
        frac = (step - long_from + 1) / c["long_iters"]
        return int(round(c["n_end"] + frac * (max(c["n_long"], c["n_end"]) - c["n_end"])))
    frac = min(1.0, step / max(1, c["curriculum_iters"]))
    return int(round(c["n_start"] + frac * (c["n_end"] - c["n_start"])))


def batch_size_at(step, c):
    return c["long_batch_size"] if c["long_iters"] > 0 and step >= c["max_iters"] - c["long_iters"] else c["batch_size"]


def train_len(c):
    """The longest training prompt, in characters (the most repeats and a 5-digit key)."""
    n = max(n_max_at(step, c) for step in {0, c["curriculum_iters"], max(0, c["max_iters"] - 1)})
    return len(make_prompt_parts(n, 0, KEY_MAX))


def model_config(c, mode):
    return infini.Config(vocab_size=VOCAB_SIZE, n_layer=c["n_layer"], n_head=c["n_head"], d_model=c["d_model"],
                         segment_len=c["segment_len"], memory=mode, beta_init=c["beta_init"])


def train_model(c, mode, folder):
    """Train (or resume) one model in folder/ckpt.npz. -> params, cfg, meta."""
    ckpt_path, log_path = os.path.join(folder, "ckpt.npz"), os.path.join(folder, "log.jsonl")
    os.makedirs(folder, exist_ok=True)
    if c["init_from"] == "resume":
        params, opt, meta = checkpoint.load_checkpoint(ckpt_path)
        if opt is None:
            raise checkpoint.CheckpointError(f"{ckpt_path} has no optimiser state to resume from")
        c.update({k: meta["config"][k] for k in DEFAULTS if k in meta["config"] and k not in
                  ("init_from", "train", "out_dir", "memory", "eval_lengths", "eval_depths",
                   "eval_samples", "eval_batch_size")})
        step = meta["step"]
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
    else:
        params = infini.init_params(model_config(c, mode), seed=c["seed"])
        opt = infini.adamw_init(params)
        step, rng = 0, np.random.default_rng(c["seed"])
        if os.path.exists(log_path):
            os.remove(log_path)
    cfg = model_config(c, mode)

    def save():
        meta = {"config": c, "model": {**vars(cfg)}, "step": step, "rng": rng.bit_generator.state,
                "train_len": train_len(c), "vocab": "".join(CHARS),
                "tokenizer": {"kind": "char", "itos": list(CHARS)}}  # what sample.py reads
        checkpoint.save_checkpoint(ckpt_path, params, opt, meta)

    print(f"[{mode}] {infini.num_params(params):,} parameters, {cfg.n_layer} layers, {cfg.n_head} heads, "
          f"d_model {cfg.d_model}, segment {cfg.segment_len}; prompts up to {train_len(c)} characters")
    if step >= c["max_iters"]:
        print(f"[{mode}] {ckpt_path} finished its {step} steps: evaluating it")
        return params, cfg, {"train_len": train_len(c), "step": step}
    losses, accs = [], []
    bar = tqdm(total=c["max_iters"], initial=step, desc=f"train {mode}", unit="step", dynamic_ncols=True)
    with bar:
        while step < c["max_iters"]:
            lr = get_lr(step, c)
            idx, targets, weights = make_batch(rng, batch_size_at(step, c), n_max_at(step, c),
                                               c["answer_weight"], c["lm_weight"])
            loss, grads, acc = weighted_loss_and_grads(params, idx, targets, weights, cfg)
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
            if step % 100 == 0 or step == c["max_iters"]:
                with open(log_path, "a") as f:
                    f.write(json.dumps({"step": step, "loss": float(np.mean(losses[-100:])),
                                        "answer_acc": float(np.mean(accs[-100:])), "lr": lr,
                                        "n_max": n_max_at(step, c)}) + "\n")
                save()
    export_model(ckpt_path, os.path.join(folder, "model.npz"))
    return params, cfg, {"train_len": train_len(c), "step": step}


def export_model(ckpt_path, path):
    """The trained model alone (no optimiser state, a third of the size): what passkey_ckpt/ ships."""
    params, _, meta = checkpoint.load_checkpoint(ckpt_path)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version", "rng")}
    checkpoint.save_checkpoint(path, params, None, meta)


def load_model(path):
    """A trained passkey model: params, cfg, meta (from checkpoint.py's .npz)."""
    params, _, meta = checkpoint.load_checkpoint(path)
    if meta.get("vocab") != "".join(CHARS):
        raise checkpoint.CheckpointError(f"{path} is not a passkey model (another vocabulary)")
    return params, infini.Config(**meta["model"]), meta


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
        params, cfg, meta = load_model(path)
        print(f"[{mode}] loaded {os.path.relpath(path, ROOT)} ({meta['step']} steps, prompts up to "
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
    out = {"memory": mode, "train_len": tlen,
           "results": {str(n): {name: res[n][d]["exact"] for name, d in NAMED_DEPTHS.items()} for n in lengths},
           "digit_accuracy": {str(n): {name: res[n][d]["digits"] for name, d in NAMED_DEPTHS.items()}
                              for n in lengths},
           "by_depth": {str(n): {f"{d:g}": res[n][d]["exact"] for d in depths} for n in lengths},
           "samples": {str(n): {f"{d:g}": res[n][d]["samples"] for d in depths} for n in lengths},
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
    print(f"[{mode}] streamed {total:,} characters in {seconds:.0f} s ({total / seconds:,.0f} chars/s, "
          f"{c['eval_batch_size']} prompts at once): a 1M-character prompt takes about "
          f"{1e6 * min(c['eval_batch_size'], len(depths) * c['eval_samples']) / (total / seconds):.0f} s "
          f"per batch. Outputs in {folder}/: results.json, heatmap.png")
    return out


def validate(c):
    for key in ("n_layer", "n_head", "d_model", "segment_len", "batch_size", "long_batch_size", "eval_samples",
                "eval_batch_size"):
        if c[key] < 1:
            raise ValueError(f"--{key} must be at least 1, got {c[key]}")
    for key in ("max_iters", "learning_rate", "min_lr", "warmup_iters", "weight_decay", "grad_clip",
                "beta_lr_mult", "n_start", "n_end", "curriculum_iters", "long_iters", "n_long", "answer_weight",
                "lm_weight", "seed"):
        if c[key] < 0:
            raise ValueError(f"--{key} must not be negative, got {c[key]}")
    if c["answer_weight"] == 0:
        raise ValueError("--answer_weight must be positive")
    choices = {"memory": MODES + ("all",), "init_from": ("shipped", "scratch", "resume")}
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
    if c["train"]:
        c["init_from"] = "scratch"
    modes = MODES if c["memory"] == "all" else (c["memory"],)
    t0 = time.time()
    rows = {}
    try:
        for mode in modes:
            rows[mode] = run_mode(c, mode)
    except (checkpoint.CheckpointError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if len(rows) > 1:
        lengths = sorted(set.intersection(*(set(map(int, r["results"])) for r in rows.values())))
        print(f"\npasskey retrieval, exact match % with the key at start/middle/end "
              f"({c['eval_samples']} keys each, greedy decoding):")
        print(table({m: r["results"] for m, r in rows.items()}, lengths))
    print(f"done in {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    argv = ["--train=True" if a == "--train" else a for a in sys.argv[1:]]  # a bare --train flag
    sys.exit(main(configurator.apply(dict(DEFAULTS), argv, validate, __doc__)))
