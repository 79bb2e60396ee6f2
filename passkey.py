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
    python passkey.py --filler=plays        # the shipped haystack models: keys hidden in held-out plays
    python passkey.py --train --filler=plays --memory=linear --key_penalty=0 --seed=1339   # 65 min;
                                            #   then --memory=delta --seed=1339
    python passkey.py --train config/multikey.py --memory=linear   # multi-key, from haystack-linear; then delta

Settings are the plain variables below (config/passkey.py repeats the recipe); override them
with a config file and --key=value (configurator.py). Outputs go to out_dir/<memory>/:
results.json (exact match % per length and depth, per-digit accuracy, sample answers, the
answer's teacher-forced accuracy by the position in its segment of the character read, and
what the haystack does to the answer's read: passkey_eval.dilution),
heatmap.png (depth x length), and for a training run ckpt.npz (resumable with
--init_from=resume), model.npz (the weights alone: what passkey_ckpt/ ships) and log.jsonl.

Why each part of the recipe is there (the runs behind each: docs/passkey_runs.md, and for the
plays docs/passkey.md, "What the plays still need"):
- loss weights: the answer and the key's second occurrence carry the loss (answer_weight),
  every other character a little (lm_weight), so the few characters that matter count;
- fixed gates (beta_lr_mult = 0): learned gates close the last layer's memory before it
  has learned to retrieve, or (on the plays) learn on short prompts a mix that does not
  hold at a million characters;
- the filler line in a quarter of the plays' prompts (template_frac): the same model then
  answers on SPEC's filler too, and holds the key line in the question's segment on both;
- the first layer's memory closed (memory_layers = 1): the second layer's queries and keys
  then depend on the local text only, not on a memory read that drifts with the length;
- a curriculum over length (n_start, n_end, n_long): retrieval is learned on short prompts first;
- leading newlines (shift_max): the answer meets every position in its segment in training,
  as it does in prompts of any length;
- 4-digit keys and key lines right before the question after the curriculum (short_keys,
  key_last): the cases only local attention can answer, copying a key in the question's segment;
- a key penalty (key_penalty): filler keys pushed below -8 write almost nothing into the
  memory, so the key's share of the read holds as the filler grows (passkey_eval.dilution
  measures the share; haystack-linear is trained without it: on the plays, the key line's
  value stands out of an average of every character instead);
- a query penalty in the tune phase (query_penalty): the answer's queries stop reading the
  few large keys that filler characters keep;
- the penalties on open heads only: on the closed first layer they would saturate its
  local attention into a copy from a fixed distance;
- a memory that starts full in the tune phase (far_fill): the training loss then sees how
  a million characters of filler dilute the read, which no short prompt shows (not for delta
  on the plays: its stand-in for a full delta memory holds for a repeated line only);
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
init_weights = ""          # --train (none, linear): start from this model's weights (a .npz of the same settings and
                           #   vocabulary) instead of fresh ones; "": fresh. The multi-key recipe starts from haystack-*
device = "auto"            # "auto" (a GPU if CuPy finds one), "cpu" or "cuda"; the README's timings are the CPU's
# the haystack
filler = "template"        # "template": SPEC's filler line repeated; "plays": real text (passkey_task.py), cut from
                           #   the training plays in training, from the held-out plays in evaluation: the models
                           #   haystack-<memory> (out_dir/haystack-<memory>/, passkey_ckpt/haystack-<memory>.npz)
template_frac = 0.25       # filler "plays": this fraction of the training prompts keeps the filler line
data_dir = "data/shakespeare_char"  # filler "plays": the prepared plays (python data/shakespeare_char/prepare.py)
max_keys = 1               # > 1 (filler "plays"): multi-key retrieval, each training prompt has 1..max_keys key lines
                           #   with distinct names and asks for one (passkey_task.multikey_prompt): multikey-<memory>
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
far_fill = 1000000         # tune phase: 3/4 of the prompts start from the memory of <= far_fill filler chars (0: off);
                           #   always off for delta with filler "plays" (passkey_memory.far_memory says why)
# evaluation
eval_lengths = ""          # comma-separated prompt lengths in characters; "": 1x to 32x the longest training input
eval_depths = "0,0.25,0.5,0.75,1"  # key depths: 0 start, 0.5 middle, 1 end
eval_samples = 10          # keys per depth and length
eval_batch_size = 50       # prompts streamed together in one state
eval_keys = "1,2,4,8,16,32"  # multi-key models: the numbers of key lines evaluated, 2 * eval_samples prompts each
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
                "memory_layers", "max_keys"):
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
    for key in ("short_keys", "key_last", "template_frac"):
        if not 0 <= c[key] <= 1:
            raise ValueError(f"--{key} is a fraction: it must lie in [0, 1], got {c[key]}")
    cycle = math.lcm(len(passkey_task.FILLER) + 1, c["segment_len"])
    if 0 < c["far_fill"] < cycle:
        raise ValueError(f"--far_fill must be 0 (off) or at least one filler cycle ({cycle} characters with "
                         f"segments of {c['segment_len']}), got {c['far_fill']}")
    choices = {"memory": MODES + ("all",), "init_from": ("shipped", "scratch", "resume"),
               "device": ("cpu", "cuda", "auto"), "filler": ("template", "plays")}
    for key, allowed in choices.items():
        if c[key] not in allowed:
            raise ValueError(f"--{key} must be one of {', '.join(allowed)}; got {c[key]!r}")
    if c["init_weights"] and not os.path.isfile(c["init_weights"]):
        raise ValueError(f"--init_weights: no file {c['init_weights']}")
    if c["max_keys"] > 1 and c["filler"] != "plays":
        raise ValueError("--max_keys above 1 needs --filler=plays (the names need the plays' vocabulary)")
    ks = parse_list(c["eval_keys"], int, "eval_keys")
    if not ks or any(not 1 <= k <= passkey_task.MAX_KEYS for k in ks) or c["max_keys"] > passkey_task.MAX_KEYS:
        raise ValueError(f"--eval_keys and --max_keys take numbers of key lines in 1..{passkey_task.MAX_KEYS}")
    lengths = parse_list(c["eval_lengths"], int, "eval_lengths")
    shortest = len(passkey_task.make_prompt_parts(0, 0, passkey_task.KEY_MAX))
    if any(n < shortest for n in lengths):
        raise ValueError(f"--eval_lengths: a prompt needs at least {shortest} characters")
    if any(not 0 <= d <= 1 for d in parse_list(c["eval_depths"], float, "eval_depths")):
        raise ValueError("--eval_depths must lie in [0, 1]")
    model_config(c, "delta", Task(passkey_task.CHARS))  # the model's own checks (d_model divisible by n_head, ...)


class Task:
    """The passkey task a model is trained and evaluated on: its vocabulary (chars, stoi) and,
    for filler "plays", the real text its haystacks are cut from (train, val: None for the
    template filler)."""
    def __init__(self, chars, train=None, val=None):
        self.chars, self.train, self.val = list(chars), train, val
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}


def load_task(c):
    """The task c asks for: the template's vocabulary, or the plays and the vocabulary of both."""
    if c["filler"] == "template":
        return Task(passkey_task.CHARS)
    try:
        train, val = passkey_task.load_plays(c["data_dir"])
    except FileNotFoundError as e:
        raise checkpoint.CheckpointError(str(e)) from None
    return Task(passkey_task.haystack_chars(train, val), train, val)


def model_name(c, mode):
    """The model's name: its folder in out_dir and its file in passkey_ckpt/ ("delta", "haystack-delta",
    "multikey-delta")."""
    if c["max_keys"] > 1:
        return f"multikey-{mode}"
    return mode if c["filler"] == "template" else f"haystack-{mode}"


# -----------------------------------------------------------------------------
# the model: fresh with the first layers' memory closed, or delta from a trained linear model


def model_config(c, mode, task=None):
    """The model's Config; task: its vocabulary (the template's by default)."""
    return infini.Config(vocab_size=passkey_task.VOCAB_SIZE if task is None else len(task.chars), n_layer=c["n_layer"], n_head=c["n_head"],
                         d_model=c["d_model"], segment_len=c["segment_len"], memory=mode, beta_init=c["beta_init"],
                         rope_base=c["rope_base"])


def init_model(c, mode, task):
    """Fresh weights, with the gates shut (CLOSED_GATE) in every layer before the last memory_layers;
    or, with init_weights, a trained model's (of the same settings and vocabulary), to train on."""
    if c["init_weights"]:
        params, cfg, _ = load_model(c["init_weights"], task=task)
        if vars(cfg) != vars(model_config(c, mode, task)):
            raise checkpoint.CheckpointError(f"--init_weights: {c['init_weights']} is not a {mode} model of these "
                                             f"settings ({cfg})")
        return params
    params = infini.init_params(model_config(c, mode, task), seed=c["seed"])
    for l in range(c["n_layer"] - c["memory_layers"]):
        if f"h.{l}.beta" in params:                                        # (none has no gates)
            params[f"h.{l}.beta"][:] = passkey_memory.CLOSED_GATE
    return params


def warm_start(c, path, task):
    """The weights of a trained linear model, to train on with the delta rule (same shape, same gates)."""
    if not os.path.exists(path):
        raise checkpoint.CheckpointError(f"delta starts from the linear model: no {path}: train it first "
                                         f"(--memory=linear, same out_dir)")
    params, cfg, _ = load_model(path, task=task)
    if cfg.memory != "linear" or {**vars(cfg), "memory": "delta"} != vars(model_config(c, "delta", task)):
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
    if c["max_keys"] > 1:                                                  # the longest names, 5-digit keys
        name = max(passkey_task.NAMES, key=len)
        line = passkey_task.NAMED_KEY_LINE.format(name=name, key=passkey_task.KEY_MAX)
        fixed = len(passkey_task.INTRO) + c["max_keys"] * (len(line) + 1) + 1
        return fixed + len(passkey_task.NAMED_QUESTION.format(name=name)) + n * passkey_task.REPEAT + c["shift_max"]
    return len(passkey_task.make_prompt_parts(n, 0, passkey_task.KEY_MAX)) + c["shift_max"]


def train_model(c, mode, folder, task):
    """Train (or resume) one model in folder/ckpt.npz. -> params, cfg, meta."""
    ckpt_path, log_path = os.path.join(folder, "ckpt.npz"), os.path.join(folder, "log.jsonl")
    if c["init_from"] == "resume":
        params, opt, meta = checkpoint.load_checkpoint(ckpt_path)
        if opt is None:
            raise checkpoint.CheckpointError(f"{ckpt_path} has no optimiser state to resume from")
        c.update({k: meta["config"][k] for k in DEFAULTS if k in meta["config"] and k not in
                  ("init_from", "train", "out_dir", "memory", "device", "eval_lengths", "eval_depths",
                   "eval_samples", "eval_batch_size", "eval_keys", "data_dir")})
        step = meta["step"]
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
    elif mode == "delta":                                                 # the tune phase alone, from linear
        linear = os.path.join(c["out_dir"], model_name(c, "linear"), "model.npz")
        params, step = warm_start(c, linear, task), c["max_iters"]
    else:
        params, step = init_model(c, mode, task), 0
    if mode == "delta" and task.train is not None and c["far_fill"]:      # see far_fill's comment
        print("[delta] far_fill off: its delta memory stands for a filler line repeated, and the plays do not repeat")
        c["far_fill"] = 0
    if c["init_from"] != "resume":
        opt, rng = infini.adamw_init(params), np.random.default_rng(c["seed"])
        for name in ("ckpt.npz", "model.npz", "log.jsonl"):               # --overwrite=True: a new run
            if os.path.exists(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))
    cfg = model_config(c, mode, task)
    xp = infini.backend(c["device"])
    params, opt = infini.to_device(xp, params, opt)                       # (a CPU checkpoint runs on a GPU)

    def save():
        meta = {"config": c, "model": {**vars(cfg)}, "step": step, "rng": rng.bit_generator.state,
                "train_len": train_len(c), "vocab": "".join(task.chars), "filler": c["filler"],
                "tokenizer": {"kind": "char", "itos": task.chars}}  # what sample.py reads
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
            if c["max_keys"] > 1:
                idx, targets, weights = passkey_task.make_multikey_batch(
                    rng, c["batch_size"], n_max_at(step, c), c["max_keys"], c["answer_weight"], c["lm_weight"],
                    c["shift_max"], task.train, task.stoi)
            else:
                idx, targets, weights = passkey_task.make_batch(
                    rng, c["batch_size"], n_max_at(step, c), c["answer_weight"], c["lm_weight"], c["shift_max"],
                    c["short_keys"] if late else 0.0, c["key_last"] if late else 0.0, task.train,
                    c["template_frac"], task.stoi)
            if tuning and c["far_fill"] and mode != "none":
                if filler is None or step % passkey_memory.FILL_EVERY == 0:
                    filler = passkey_memory.filler_memory(params, cfg, task.train, rng, task.stoi)
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


def load_model(path, device="cpu", task=None):
    """A trained passkey model: params (on the device), cfg, meta (from checkpoint.py's .npz).
    task: the vocabulary it must have (by default the template's, or any for a haystack model)."""
    params, cfg, meta = checkpoint.load_model(path, device)
    want = None if task is None and meta.get("filler") == "plays" else task or Task(passkey_task.CHARS)
    if want is not None and meta.get("vocab") != "".join(want.chars):
        raise checkpoint.CheckpointError(f"{path} is not a passkey model of this task (another vocabulary)")
    return params, cfg, meta


# -----------------------------------------------------------------------------
# evaluation and report: results.json, heatmap.png, the tables


def run_mode(c, mode, task):
    """Train or load one model, evaluate it, write results.json and heatmap.png. -> results dict."""
    name = model_name(c, mode)
    folder = os.path.join(c["out_dir"], name)
    if c["init_from"] == "shipped":
        path = os.path.join(SHIPPED, f"{name}.npz")
        if not os.path.exists(path):
            raise checkpoint.CheckpointError(f"no shipped checkpoint {path}: train one with --train")
        params, cfg, meta = load_model(path, c["device"], task)
        print(f"[{mode}] loaded {os.path.relpath(path, ROOT)} ({meta['step']} steps, training inputs up to "
              f"{meta['train_len']} characters)")
    else:  # scratch, or resume: go on to the checkpoint's max_iters (a finished model is only evaluated)
        params, cfg, meta = train_model(dict(c), mode, folder, task)
    tlen = meta["train_len"]
    lengths = parse_list(c["eval_lengths"], int, "eval_lengths") or [tlen * k for k in (1, 2, 4, 8, 16, 32)]
    if c["max_keys"] > 1:
        return run_multikey(c, mode, task, params, cfg, tlen, lengths, folder)
    named = passkey_eval.NAMED_DEPTHS                                      # start, middle, end: the tables' cells
    depths = sorted(set(parse_list(c["eval_depths"], float, "eval_depths")) | set(named.values()))
    total = sum(len(depths) * c["eval_samples"] * (n + passkey_eval.MAX_NEW) for n in lengths)
    t0 = time.time()
    with tqdm(total=total, desc=f"eval {name}", unit="char", unit_scale=True, dynamic_ncols=True) as bar:
        res = passkey_eval.evaluate(params, cfg, lengths, depths, c["eval_samples"], seed=c["seed"],
                                    batch_size=c["eval_batch_size"], progress=bar.update, haystack=task.val,
                                    chars=task.chars)
    seconds = time.time() - t0
    n_max = passkey_task.filler_counts(tlen, passkey_task.KEY_MAX)        # training-length prompts
    offsets, offset_counts = passkey_eval.offset_accuracy(params, cfg, n_max, seed=c["seed"], haystack=task.val,
                                                          stoi=task.stoi)
    out = {"memory": mode, "model": name, "filler": c["filler"], "train_len": tlen,
           "results": {str(n): {name: res[n][d]["exact"] for name, d in named.items()} for n in lengths},
           "digit_accuracy": {str(n): {name: res[n][d]["digits"] for name, d in named.items()} for n in lengths},
           "by_depth": {str(n): {f"{d:g}": res[n][d]["exact"] for d in depths} for n in lengths},
           "samples": {str(n): {f"{d:g}": res[n][d]["samples"] for d in depths} for n in lengths},
           "offset_accuracy": offsets, "offset_counts": offset_counts,
           "keys_per_depth": c["eval_samples"], "eval_seconds": round(seconds, 1),
           "eval_chars_per_sec": round(total / seconds)}
    if mode != "none":                                                     # what the haystack does to the read
        text = (passkey_task.passage(task.val, 0, 65536) if task.val is not None
                else (" " + passkey_task.FILLER) * 720)
        out["dilution"] = passkey_eval.dilution(params, cfg, text, task.stoi, length=tlen, seed=c["seed"],
                                                haystack=task.val)
    if task.val is not None:                                               # the same model on the filler line
        far = max(lengths)
        spec = passkey_eval.evaluate(params, cfg, [far], depths, c["eval_samples"], seed=c["seed"],
                                     batch_size=c["eval_batch_size"], chars=task.chars)[far]
        out["template_results"] = {str(far): {n: spec[d]["exact"] for n, d in named.items()}}
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(out, f, indent=1)
    grid = np.array([[res[n][d]["exact"] for n in lengths] for d in depths])
    where = "in the held-out plays" if task.val is not None else "in the filler line"
    passkey_eval.heatmap(grid, depths, lengths, f"passkey {where}, memory {mode!r} (trained on <= {tlen:,} chars)",
                         os.path.join(folder, "heatmap.png"))
    print(f"[{name}] exact match % (start/middle/end) {where}, {c['eval_samples']} keys each; "
          f"per-digit accuracy in results.json")
    print(passkey_eval.table({mode: out["results"]}, lengths))
    print(f"[{name}] per-digit accuracy % (start/middle/end):")
    print(passkey_eval.table({mode: out["digit_accuracy"]}, lengths))
    if "template_results" in out:
        print(f"[{name}] the same model with the filler line, {max(lengths):,} characters: exact match % "
              f"(start/middle/end): {'/'.join(f'{v:.0f}' for v in out['template_results'][str(max(lengths))].values())}")
    if "dilution" in out:
        print(f"[{name}] the answer's read in the last layer: the key line's share of its weights "
              f"(passkey_eval.dilution), and the haystack character that weighs most:")
        shares = passkey_eval.describe_dilution(out["dilution"], sorted({max(lengths), 1000000}))
        print("\n".join("  " + line for line in shares))
    print(f"[{name}] answer characters predicted right (teacher-forced, training-length prompts), by where "
          f"the character read sits in its segment: {passkey_eval.describe_offsets(offsets)}")
    print(f"[{name}] streamed {total:,} characters in {seconds:.0f} s ({total / seconds:,.0f} chars/s, "
          f"{c['eval_batch_size']} prompts at once): a 1M-character prompt takes about "
          f"{1e6 * min(c['eval_batch_size'], len(depths) * c['eval_samples']) / (total / seconds):.0f} s "
          f"per batch. Outputs in {folder}/: results.json, heatmap.png")
    return out


def run_multikey(c, mode, task, params, cfg, tlen, lengths, folder):
    """Evaluate a multi-key model: exact match % by the number of key lines and the length."""
    ks, n = parse_list(c["eval_keys"], int, "eval_keys"), 2 * c["eval_samples"]
    total = len(ks) * n * sum(length + passkey_eval.MAX_NEW for length in lengths)
    t0 = time.time()
    with tqdm(total=total, desc=f"eval multikey-{mode}", unit="char", unit_scale=True, dynamic_ncols=True) as bar:
        res = passkey_eval.evaluate_multikey(params, cfg, ks, lengths, n, seed=c["seed"],
                                             batch_size=c["eval_batch_size"], progress=bar.update,
                                             haystack=task.val, chars=task.chars)
    out = {"memory": mode, "model": f"multikey-{mode}", "filler": c["filler"], "train_len": tlen,
           "max_keys": c["max_keys"], "prompts_per_cell": n, "lengths": lengths,
           "multikey": {str(k): {str(length): res[k][length]["exact"] for length in lengths} for k in ks},
           "samples": {str(k): {str(length): res[k][length]["samples"] for length in lengths} for k in ks},
           **{f"{part}_digits": {str(k): {str(length): res[k][length].get(f"{part}_digits") for length in lengths}
                                 for k in ks} for part in ("asked", "other")},
           "eval_seconds": round(time.time() - t0, 1)}
    if mode != "none":                                                     # does the name steer the read?
        out["read"] = passkey_eval.multikey_read(params, cfg, task.stoi, task.val, seed=c["seed"])
        out["names"] = passkey_eval.name_probe(params, cfg, task.stoi, task.val, seed=c["seed"])
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"[multikey-{mode}] exact match % by key lines (rows) and length (columns), {n} prompts each, "
          f"in the held-out plays (trained on 1..{c['max_keys']} key lines):")
    print(passkey_eval.multikey_table(out["multikey"], lengths))
    if any(k > 1 for k in ks):
        print(f"[multikey-{mode}] the answers' digits, % equal to the asked key's at their place (another line's "
              f"key's): a read that mixes two keys gets about half of each")
        cells = {k: {n: None if v is None else f"{v:.0f} ({out['other_digits'][k][n]:.0f})" for n, v in row.items()}
                 for k, row in out["asked_digits"].items() if k != "1"}
        print(passkey_eval.multikey_table(cells, lengths))
    if "read" in out:
        r = out["read"]
        print(f"[multikey-{mode}] the answer's read in the last layer, two key lines segments back "
              f"(passkey_eval.multikey_read): the asked line's weight and the other's; the asked line's shares "
              f"on its shared words / name / digits:")
        print("\n".join(f"  head {h}: {r['asked'][h]:.4g} and {r['other'][h]:.4g}; {r['shared'][h]:.0%} / "
                        f"{r['name'][h]:.0%} / {r['digits'][h]:.0%}" for h in range(len(r["asked"]))))
        r = out["names"]
        print(f"[multikey-{mode}] where the name is (passkey_eval.name_probe: a linear read-out names it, % of "
              f"held-out prompts, chance {r['chance']:.0f}%): in the residual at the answer {r['residual']:.0f}%, "
              f"in its query {r['query']:.0f}%; at the line's first digit in the residual {r['digit_residual']:.0f}%, "
              f"in its key {r['key']:.0f}%")
    print(f"[multikey-{mode}] outputs in {folder}/: results.json")
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
                created += checkpoint.claim_out_dir(os.path.join(c["out_dir"], model_name(c, mode)),
                                                    resume=c["init_from"] == "resume", overwrite=c["overwrite"])
    except ValueError as e:                        # --device=cuda without a GPU; an out_dir that cannot be
        print(f"error: {e}", file=sys.stderr)      # written or holds a trained run
        return 2
    if c["init_from"] == "shipped" and c["memory"] == "all":                # the shipped ones of this filler
        shipped = [m for m in modes if os.path.exists(os.path.join(SHIPPED, f"{model_name(c, m)}.npz"))]
        for mode in modes:
            if mode not in shipped:
                print(f"[{mode}] no shipped {model_name(c, mode)}.npz in passkey_ckpt/: skipped")
        modes = shipped or modes                                           # none at all: run_mode says so
    try:
        task = load_task(c)
        for mode in modes:
            rows[mode] = run_mode(c, mode, task)
    except (checkpoint.CheckpointError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        checkpoint.remove_if_empty(created)
    if len(rows) > 1 and c["max_keys"] > 1:
        for mode, r in rows.items():
            print(f"\nmultikey-{mode}, exact match % by key lines and length ({r['prompts_per_cell']} prompts each):")
            print(passkey_eval.multikey_table(r["multikey"], r["lengths"]))
    elif len(rows) > 1:
        lengths = sorted(set.intersection(*(set(map(int, r["results"])) for r in rows.values())))
        print(f"\npasskey retrieval, exact match % with the key at start/middle/end "
              f"({c['eval_samples']} keys each, greedy decoding):")
        print(passkey_eval.table({m: r["results"] for m, r in rows.items()}, lengths))
    print(f"done in {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main(configurator.apply(dict(DEFAULTS), sys.argv[1:], validate, __doc__)))

