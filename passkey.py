"""
passkey.py: the paper's passkey retrieval test (Appendix B), small enough for a laptop.

A small Infini-Transformer (infini.py) is trained from scratch on short passkey prompts
(passkey_task.py: a number hidden in repeated filler text, asked for at the end), then asked
for keys hidden in prompts up to 32x longer, or a million characters, read through the
streaming state (passkey_eval.py), whose memory is bounded whatever the length. Training
has a main phase, a curriculum over the prompt length, then a tune phase with a fresh
optimiser; delta trains the tune phase alone, from the trained linear model.

    python passkey.py                       # the shipped models (passkey_ckpt/), 3 memories: the table
    python passkey.py --train               # train the three: none and linear (40-50 min each on one
                                            #   CPU core), then delta from linear (10 min)
    python passkey.py --train --memory=linear --out_dir=out-mine   # then --memory=delta, same out_dir
    python passkey.py --init_from=resume --memory=delta --eval_lengths=1452,1000000 --eval_depths=0,0.5,1
    python passkey.py --train --device=cuda     # on one GPU (CuPy)

Settings are the plain variables below (config/passkey.py repeats the recipe); override them
with a config file and --key=value (configurator.py). Outputs go to out_dir/<memory>/:
results.json (exact match % per length and depth, per-digit accuracy, sample answers, and
the answer's teacher-forced accuracy by the position in its segment of the character read),
heatmap.png (depth x length), and for a training run ckpt.npz (resumable with
--init_from=resume), model.npz (the weights alone: what passkey_ckpt/ ships) and log.jsonl.

Why each part of the recipe is there (docs/passkey_runs.md has the runs behind each):
- loss weights: the answer and the key's second occurrence carry the loss (answer_weight),
  every other character a little (lm_weight), so the few characters that matter count;
- fixed gates (beta_lr_mult = 0): learned gates close the last layer's memory before it
  has learned to retrieve;
- the first layer's memory closed (memory_layers = 1): the second layer's queries and keys
  then depend on the local text only, not on a memory read that drifts with the length;
- a curriculum over length (n_start, n_end, n_long): retrieval is learned on short prompts first;
- leading newlines (shift_max): the answer meets every position in its segment in training;
- 4-digit keys and key lines right before the question after the curriculum (short_keys,
  key_last): the cases only local attention can answer, copying a key in the question's segment;
- a key penalty (key_penalty): filler keys pushed below -8 write almost nothing into the
  memory, so the key's share of the read holds as the filler grows;
- a query penalty in the tune phase (query_penalty): the answer's queries stop reading the
  few large keys that filler characters keep;
- the penalties on open heads only: on the closed first layer they would saturate its
  local attention into a copy from a fixed distance;
- a memory that starts full in the tune phase (far_fill): the training loss then sees how
  a million characters of filler dilute the read, which no short prompt shows;
- delta from linear: trained from scratch, delta does not learn to copy a key in the
  question's own segment; linear does, and delta keeps it when it starts from linear's
  weights and trains the tune phase alone with the delta rule.
"""
import json
import math
import os
import sys
import time

import numpy as np
from tqdm import tqdm

import checkpoint
import configurator
import infini
import passkey_eval
import passkey_memory
import passkey_task
from speed import parallel

# -----------------------------------------------------------------------------
# default settings: the shipped recipe (config/passkey.py repeats it)
# I/O
out_dir = "out-passkey"    # out_dir/<memory>/: ckpt.npz, model.npz, log.jsonl, results.json, heatmap.png
memory = "all"             # "none", "linear", "delta", or "all": the three in that order (delta starts from linear)
init_from = "shipped"      # "shipped" (evaluate passkey_ckpt/<memory>.npz), "scratch", "resume" (ckpt.npz, to its end)
train = False              # --train is short for --init_from=scratch (reproduce the shipped models)
overwrite = False          # True: --train may replace the checkpoints already in out_dir/<memory>/
device = "auto"            # "auto" (a GPU if CuPy finds one), "cpu" or "cuda"; the README's timings are the CPU's
# model
n_layer = 2                # L: transformer blocks
n_head = 4                 # H: heads per block
d_model = 64               # C: width of the residual stream
segment_len = 128          # N: a prompt of 1,452 characters spans 12 segments
rope_base = 10000.0        # rope's base in local attention (infini.Config)
memory_layers = 1          # only the last memory_layers layers read their memory; the others' gate logit is -20
beta_init = 1.0            # the open gates' logit: sigmoid(1) = 0.73, mostly memory
beta_lr_mult = 0.0         # the gates' learning rate is this times the others': 0 keeps them fixed
# the main phase: short prompts; the answer (and the key's second occurrence) carries the loss
max_iters = 7000           # steps of the main phase (the tune phase follows)
batch_size = 16            # prompts per step
learning_rate = 1e-2       # peak learning rate: a tiny model takes a high one
min_lr = 1e-3              # the learning rate at max_iters, after a cosine decay
warmup_iters = 50          # steps of linear warmup at the start of each phase
weight_decay = 0.0         # AdamW's decoupled weight decay
grad_clip = 1.0            # clip the global gradient norm to this (0: off)
answer_weight = 1.0        # loss weight of each answer character and of the key's second occurrence
lm_weight = 0.02           # loss weight of every other character
# the curriculum: a batch's prompts have n filler repeats, n drawn in 0..n_max
n_start = 4                # n_max at step 0
n_end = 8                  # n_max from step curriculum_iters on
curriculum_iters = 1500    # steps over which n_max grows from n_start to n_end
long_iters = 5500          # over the last long_iters steps of the main phase n_max grows on to n_long
n_long = 12                # n_max at the end of the main phase and in the tune phase
shift_max = 127            # each training prompt starts after 0..shift_max newlines (0: none)
short_keys = 0.3           # from step curriculum_iters on, this fraction of the keys is drawn from 1000..9999
key_last = 0.3             # from step curriculum_iters on, this fraction of the prompts has its key line last
# penalties on the memory's keys and queries, the open heads' only (passkey_memory.memory_penalty)
key_penalty = 0.02         # key_penalty * mean(relu(k + key_margin)) over each layer's keys joins the loss (0: off)
key_margin = 8.0           # the key penalty pushes keys below -key_margin, where sigma(k) = e^k is tiny
query_penalty = 0.02       # the tune phase adds query_penalty * mean(relu(q + query_margin)) over the queries
query_margin = 8.0         # the query penalty pushes queries below -query_margin
# the tune phase: after max_iters, a fresh optimiser (delta trains this phase alone, from linear)
tune_iters = 1500          # steps of the tune phase
tune_lr = 1e-3             # the tune phase's peak learning rate
tune_min_lr = 1e-4         # the tune phase's learning rate at its end, after a cosine decay
far_fill = 1000000         # tune phase: 3/4 of the prompts start from the memory of <= far_fill filler chars (0: off)
# evaluation
eval_lengths = ""          # comma-separated prompt lengths in characters; "": 1x to 32x the longest training input
eval_depths = "0,0.25,0.5,0.75,1"  # key depths: 0 start, 0.5 middle, 1 end
eval_samples = 10          # keys per depth and length
eval_batch_size = 50       # prompts streamed together in one state
seed = 1337                # the initial weights, the training batches and the evaluation's keys
# -----------------------------------------------------------------------------
DEFAULTS = configurator.defaults(globals())
MODES = ("none", "linear", "delta")
ROOT = os.path.dirname(os.path.abspath(__file__))
SHIPPED = os.path.join(ROOT, "passkey_ckpt")  # the small trained checkpoints: <memory>.npz


def parse_list(text, kind, key):
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--{key} takes comma-separated numbers, got {text!r}") from None


def validate(c):
    """Impossible settings -> ValueError naming the key (configurator makes it a one-line error)."""
    for key in ("n_layer", "n_head", "d_model", "segment_len", "batch_size", "eval_samples", "eval_batch_size",
                "memory_layers"):
        if c[key] < 1:
            raise ValueError(f"--{key} must be at least 1, got {c[key]}")
    for key in ("max_iters", "learning_rate", "min_lr", "warmup_iters", "weight_decay", "grad_clip",
                "beta_lr_mult", "n_start", "n_end", "curriculum_iters", "long_iters", "n_long", "answer_weight",
                "lm_weight", "key_penalty", "key_margin", "tune_iters", "tune_lr", "tune_min_lr", "query_penalty",
                "query_margin", "seed", "shift_max", "far_fill"):
        if c[key] < 0:
            raise ValueError(f"--{key} must not be negative, got {c[key]}")
    if c["answer_weight"] == 0:
        raise ValueError("--answer_weight must be positive")
    for key in ("short_keys", "key_last"):
        if not 0 <= c[key] <= 1:
            raise ValueError(f"--{key} is a fraction: it must lie in [0, 1], got {c[key]}")
    cycle = math.lcm(len(passkey_task.FILLER) + 1, c["segment_len"])
    if 0 < c["far_fill"] < cycle:
        raise ValueError(f"--far_fill must be 0 (off) or at least one filler cycle ({cycle} characters with "
                         f"segments of {c['segment_len']}), got {c['far_fill']}")
    choices = {"memory": MODES + ("all",), "init_from": ("shipped", "scratch", "resume"),
               "device": ("cpu", "cuda", "auto")}
    for key, allowed in choices.items():
        if c[key] not in allowed:
            raise ValueError(f"--{key} must be one of {', '.join(allowed)}; got {c[key]!r}")
    lengths = parse_list(c["eval_lengths"], int, "eval_lengths")
    shortest = len(passkey_task.make_prompt_parts(0, 0, passkey_task.KEY_MAX))
    if any(n < shortest for n in lengths):
        raise ValueError(f"--eval_lengths: a prompt needs at least {shortest} characters")
    if any(not 0 <= d <= 1 for d in parse_list(c["eval_depths"], float, "eval_depths")):
        raise ValueError("--eval_depths must lie in [0, 1]")
    model_config(c, "delta")  # the model's own checks (d_model divisible by n_head, ...)


# -----------------------------------------------------------------------------
# the model: fresh with the first layers' memory closed, or delta from a trained linear model


def model_config(c, mode):
    return infini.Config(vocab_size=passkey_task.VOCAB_SIZE, n_layer=c["n_layer"], n_head=c["n_head"],
                         d_model=c["d_model"], segment_len=c["segment_len"], memory=mode, beta_init=c["beta_init"],
                         rope_base=c["rope_base"])


def init_model(c, mode):
    """Fresh weights, with the gates shut (CLOSED_GATE) in every layer before the last memory_layers."""
    params = infini.init_params(model_config(c, mode), seed=c["seed"])
    for l in range(c["n_layer"] - c["memory_layers"]):
        if f"h.{l}.beta" in params:                                        # (none has no gates)
            params[f"h.{l}.beta"][:] = passkey_memory.CLOSED_GATE
    return params


def warm_start(c, path):
    """The weights of a trained linear model, to train on with the delta rule (same shape, same gates)."""
    if not os.path.exists(path):
        raise checkpoint.CheckpointError(f"delta starts from the linear model: no {path}: train it first "
                                         f"(--memory=linear, same out_dir)")
    params, cfg, _ = load_model(path)
    if cfg.memory != "linear" or {**vars(cfg), "memory": "delta"} != vars(model_config(c, "delta")):
        raise checkpoint.CheckpointError(f"delta starts from the linear model: {path} is not a linear model of "
                                         f"these settings ({cfg}): train linear with the same settings")
    return params


# -----------------------------------------------------------------------------
# training: the main phase (a curriculum over length), then the tune phase


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


def total_iters(c):
    return c["max_iters"] + c["tune_iters"]


def train_len(c):
    """The longest training input, in characters: the most repeats, a 5-digit key, shift_max newlines."""
    n = max(n_max_at(step, c) for step in {0, c["curriculum_iters"], max(0, total_iters(c) - 1)})
    return len(passkey_task.make_prompt_parts(n, 0, passkey_task.KEY_MAX)) + c["shift_max"]


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
    elif mode == "delta":                                                 # the tune phase alone, from linear
        params, step = warm_start(c, os.path.join(c["out_dir"], "linear", "model.npz")), c["max_iters"]
    else:
        params, step = init_model(c, mode), 0
    if c["init_from"] != "resume":
        opt, rng = infini.adamw_init(params), np.random.default_rng(c["seed"])
        for name in ("ckpt.npz", "model.npz", "log.jsonl"):               # --overwrite=True: a new run
            if os.path.exists(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))
    cfg = model_config(c, mode)
    xp = infini.backend(c["device"])
    params, opt = infini.to_device(xp, params, opt)                       # (a CPU checkpoint runs on a GPU)

    def save():
        meta = {"config": c, "model": {**vars(cfg)}, "step": step, "rng": rng.bit_generator.state,
                "train_len": train_len(c), "vocab": "".join(passkey_task.CHARS),
                "tokenizer": {"kind": "char", "itos": list(passkey_task.CHARS)}}  # what sample.py reads
        checkpoint.save_checkpoint(ckpt_path, params, opt, meta)

    print(f"[{mode}] {infini.num_params(params):,} parameters, {cfg.n_layer} layers, {cfg.n_head} heads, "
          f"d_model {cfg.d_model}, segment {cfg.segment_len}; training inputs up to {train_len(c)} characters")
    if step >= total_iters(c):
        print(f"[{mode}] {ckpt_path} finished its {step} steps: evaluating it")
        return params, cfg, {"train_len": train_len(c), "step": step}
    prefill, filler = {}, None                                            # far_fill's memory (far_memory)
    train_attention = passkey_memory.memory_penalty(c["key_penalty"], c["key_margin"])
    tune_attention = passkey_memory.memory_penalty(c["key_penalty"], c["key_margin"], c["query_penalty"],
                                                   c["query_margin"], prefill=prefill)
    losses, accs = [], []
    bar = tqdm(total=total_iters(c), initial=step, desc=f"train {mode}", unit="step", dynamic_ncols=True)
    with bar:
        while step < total_iters(c):
            tuning = step >= c["max_iters"]
            if step == c["max_iters"]:                                     # the tune phase: a fresh optimiser
                opt = infini.adamw_init(params)
            lr = get_lr(step, c)
            late = step >= c["curriculum_iters"]                          # short keys after the curriculum
            idx, targets, weights = passkey_task.make_batch(
                rng, c["batch_size"], n_max_at(step, c), c["answer_weight"], c["lm_weight"], c["shift_max"],
                c["short_keys"] if late else 0.0, c["key_last"] if late else 0.0)
            if tuning and c["far_fill"] and mode != "none":
                if filler is None or step % passkey_memory.FILL_EVERY == 0:
                    filler = passkey_memory.filler_memory(params, cfg)
                prefill.update(passkey_memory.far_memory(*filler, rng, len(idx), c["far_fill"], mode))
            loss, grads, logits = infini.loss_and_grads(params, xp.asarray(idx), xp.asarray(targets), cfg,
                                                        tune_attention if tuning else train_attention,
                                                        weights=xp.asarray(weights), return_logits=True)
            acc = passkey_task.answer_accuracy(infini.to_numpy(logits.argmax(axis=-1)), targets, weights)
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


def export_model(ckpt_path, path):
    """The trained model alone (no optimiser state, a third of the size): what passkey_ckpt/ ships."""
    params, _, meta = checkpoint.load_checkpoint(ckpt_path)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version", "rng")}
    checkpoint.save_checkpoint(path, params, None, meta)


def load_model(path, device="cpu"):
    """A trained passkey model: params (on the device), cfg, meta (from checkpoint.py's .npz)."""
    params, cfg, meta = checkpoint.load_model(path, device)
    if meta.get("vocab") != "".join(passkey_task.CHARS):
        raise checkpoint.CheckpointError(f"{path} is not a passkey model (another vocabulary)")
    return params, cfg, meta


# -----------------------------------------------------------------------------
# evaluation and report: results.json, heatmap.png, the tables


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
    named = passkey_eval.NAMED_DEPTHS                                      # start, middle, end: the tables' cells
    depths = sorted(set(parse_list(c["eval_depths"], float, "eval_depths")) | set(named.values()))
    total = sum(len(depths) * c["eval_samples"] * (n + passkey_eval.MAX_NEW) for n in lengths)
    t0 = time.time()
    with tqdm(total=total, desc=f"eval {mode}", unit="char", unit_scale=True, dynamic_ncols=True) as bar:
        res = passkey_eval.evaluate(params, cfg, lengths, depths, c["eval_samples"], seed=c["seed"],
                                    batch_size=c["eval_batch_size"], progress=bar.update)
    seconds = time.time() - t0
    n_max = passkey_task.filler_counts(tlen, passkey_task.KEY_MAX)        # training-length prompts
    offsets, offset_counts = passkey_eval.offset_accuracy(params, cfg, n_max, seed=c["seed"])
    out = {"memory": mode, "train_len": tlen,
           "results": {str(n): {name: res[n][d]["exact"] for name, d in named.items()} for n in lengths},
           "digit_accuracy": {str(n): {name: res[n][d]["digits"] for name, d in named.items()} for n in lengths},
           "by_depth": {str(n): {f"{d:g}": res[n][d]["exact"] for d in depths} for n in lengths},
           "samples": {str(n): {f"{d:g}": res[n][d]["samples"] for d in depths} for n in lengths},
           "offset_accuracy": offsets, "offset_counts": offset_counts,
           "keys_per_depth": c["eval_samples"], "eval_seconds": round(seconds, 1),
           "eval_chars_per_sec": round(total / seconds)}
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(out, f, indent=1)
    grid = np.array([[res[n][d]["exact"] for n in lengths] for d in depths])
    passkey_eval.heatmap(grid, depths, lengths, f"passkey, memory {mode!r} (trained on <= {tlen:,} chars)",
                         os.path.join(folder, "heatmap.png"))
    print(f"[{mode}] exact match % (start/middle/end), {c['eval_samples']} keys each; "
          f"per-digit accuracy in results.json")
    print(passkey_eval.table({mode: out["results"]}, lengths))
    print(f"[{mode}] per-digit accuracy % (start/middle/end):")
    print(passkey_eval.table({mode: out["digit_accuracy"]}, lengths))
    print(f"[{mode}] answer characters predicted right (teacher-forced, training-length prompts), by where "
          f"the character read sits in its segment: {passkey_eval.describe_offsets(offsets)}")
    print(f"[{mode}] streamed {total:,} characters in {seconds:.0f} s ({total / seconds:,.0f} chars/s, "
          f"{c['eval_batch_size']} prompts at once): a 1M-character prompt takes about "
          f"{1e6 * min(c['eval_batch_size'], len(depths) * c['eval_samples']) / (total / seconds):.0f} s "
          f"per batch. Outputs in {folder}/: results.json, heatmap.png")
    return out


def main(c):
    parallel.keep_freed_memory()  # large temporaries reuse freed memory (speed/parallel.py)
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
        print(passkey_eval.table({m: r["results"] for m, r in rows.items()}, lengths))
    print(f"done in {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main(configurator.apply(dict(DEFAULTS), sys.argv[1:], validate, __doc__)))

