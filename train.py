"""
Train an Infini-Transformer (infini.py) on Shakespeare's plays.

    python train.py                                   # char-level, 2 CPU cores, 3-6 minutes
    python train.py config/train_shakespeare_char_gpu.py        # a larger model on one GPU
    python train.py --memory=none --out_dir=out-none            # the local-attention baseline
    python train.py --init_from=resume --max_iters=4000         # go on from out_dir/ckpt.npz

Settings are the plain variables below; override them with a config file and --key=value
(configurator.py). The data is prepared on first use (data/<dataset>/prepare.py). Every
eval_interval steps it prints `step N: train loss X, val loss Y`, appends the same to
out_dir/log.jsonl, redraws out_dir/loss.png and saves out_dir/ckpt.npz (checkpoint.py).
Ctrl-C saves a checkpoint of the last finished step; --init_from=resume then goes on
exactly as if nothing had happened (on the CPU: the same losses, bit for bit). On resume
the settings are the checkpoint's, except those given again (say a larger max_iters);
the model and the dataset always come from the checkpoint. A new run never replaces a
trained one by accident: an out_dir that holds a checkpoint is refused unless
--overwrite=True, and every setting, the data and the folder are checked before anything
in out_dir is touched.

On a machine whose cores are busy with other work, OPENBLAS_NUM_THREADS=1 python train.py
can be many times faster: BLAS threads that wait for a busy core spin instead of working.
"""
import importlib.util
import json
import math
import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import asdict

import numpy as np
from tqdm import tqdm

import checkpoint
import configurator
import infini
from speed import parallel

try:
    from speed import fast  # the labs' student copy leaves it out (labs/make_student.py)
except ImportError:
    fast = None

# -----------------------------------------------------------------------------
# default settings: a 4-layer char model that trains in 3-6 minutes on 2 CPU cores
# (config/train_shakespeare_char.py repeats them)
# I/O
out_dir = "out-shakespeare-char"  # ckpt.npz, log.jsonl and loss.png go here
eval_interval = 250        # evaluate, log and save a checkpoint every this many steps (0: at the start and end only)
eval_iters = 20            # batches per split in each evaluation
log_interval = 10          # refresh the progress bar's loss and tokens/s every this many steps
always_save_checkpoint = True  # False: save at an evaluation only when the val loss improved
init_from = "scratch"      # "scratch" or "resume" (from out_dir/ckpt.npz)
overwrite = False          # True: a new run may replace the checkpoint already in out_dir
# data
dataset = "shakespeare_char"  # "shakespeare_char" (characters) or "shakespeare" (BPE)
data_dir = ""              # "" = data/<dataset>; prepared there on first use
batch_size = 4             # sequences per optimiser step
block_size = 256           # tokens per training sequence: 2 segments, so the memory is used
# model
n_layer = 4                # L: transformer blocks
n_head = 4                 # H: heads per block
d_model = 128              # C: width of the residual stream
segment_len = 128          # N: tokens per segment of local attention
memory = "delta"           # "delta" (Eq. 9), "linear" (Eq. 8) or "none" (local attention only)
beta_init = -3.0           # the gates' first logit: each head starts as 0.05 memory read, 0.95 local attention
bptt_segments = 0          # 0: back-propagate through the memory over the whole sequence
# AdamW
learning_rate = 4e-3       # peak learning rate
max_iters = 2800           # optimiser steps in all
weight_decay = 0.1         # decoupled weight decay on the matrices (not on norms and gates)
beta1 = 0.9                # AdamW's first-moment decay
beta2 = 0.95               # AdamW's second-moment decay
grad_clip = 1.0            # clip the global gradient norm to this (0: off)
beta_lr_mult = 10.0        # the gates' learning rate is this times larger (SPEC.md, pitfalls)
# learning rate schedule: linear warmup, then cosine decay down to min_lr
warmup_iters = 100         # steps of linear warmup from 0 to learning_rate
lr_decay_iters = 0         # the cosine reaches min_lr at this step (0: at max_iters, the end of the run)
min_lr = 4e-4              # the learning rate at the end of the decay
# system
device = "auto"            # "auto" (a GPU if CuPy finds one), "cpu" or "cuda"
seed = 1337                # initial weights and the order of the training batches
threads = 0                # CPU: split each batch across this many threads (0: one per core)
attention = "auto"         # "plain" (infini.py's layer), "fast" (speed/fast.py: same math) or "auto" (fast on a CPU)
# -----------------------------------------------------------------------------
DEFAULTS = configurator.defaults(globals())

ROOT = os.path.dirname(os.path.abspath(__file__))
DATASETS = ("shakespeare_char", "shakespeare")
ATTENTIONS = ("auto", "plain", "fast")
MODEL_KEYS = ("n_layer", "n_head", "d_model", "segment_len", "memory", "beta_init", "bptt_segments")
RUN_FILES = ("ckpt.npz", "log.jsonl", "loss.png")  # what a run writes into out_dir
PROGRESS_KEYS = ("step", "last_eval_step", "best_val_loss", "elapsed", "eval")  # where a run stands


class TrainingDiverged(Exception):
    """The loss became NaN or infinite."""


def validate(c):
    """Impossible settings -> ValueError naming the key (configurator makes it a one-line error)."""
    for key in ("eval_iters", "log_interval", "batch_size", "block_size", "max_iters",
                "n_layer", "n_head", "d_model", "segment_len"):
        if c[key] < 1:
            raise ValueError(f"--{key} must be at least 1, got {c[key]}")
    for key in ("eval_interval", "learning_rate", "min_lr", "weight_decay", "grad_clip", "beta_lr_mult",
                "warmup_iters", "lr_decay_iters", "bptt_segments", "seed", "threads"):
        if c[key] < 0:
            raise ValueError(f"--{key} must not be negative, got {c[key]}")
    if c["learning_rate"] == 0:
        raise ValueError("--learning_rate must be positive, got 0")
    if c["min_lr"] > c["learning_rate"]:
        raise ValueError(f"--min_lr ({c['min_lr']}) must not exceed --learning_rate ({c['learning_rate']})")
    if c["lr_decay_iters"] and c["warmup_iters"] > c["lr_decay_iters"]:
        raise ValueError(f"--warmup_iters ({c['warmup_iters']}) must not exceed --lr_decay_iters "
                         f"({c['lr_decay_iters']})")
    for key in ("beta1", "beta2"):
        if not 0 <= c[key] < 1:
            raise ValueError(f"--{key} must be in [0, 1), got {c[key]}")
    choices = {"init_from": ("scratch", "resume"), "dataset": DATASETS, "memory": infini.MEMORY_MODES,
               "device": ("auto", "cpu", "cuda"), "attention": ATTENTIONS}
    for key, allowed in choices.items():
        if c[key] not in allowed:
            raise ValueError(f"--{key} must be one of {', '.join(allowed)}; got {c[key]!r}")
    if not c["out_dir"]:
        raise ValueError("--out_dir must not be empty")
    if c["attention"] == "fast" and fast is None:
        raise ValueError("--attention=fast needs speed/fast.py, which this copy lacks; use --attention=plain")
    # the model's own checks (d_model divisible by n_head, an even head size, ...)
    infini.Config(**{k: c[k] for k in MODEL_KEYS})


def attention_layer(name, xp):
    """--attention -> (its name, (forward, backward)) for infini.loss_and_grads. The two layers
    compute the same function (tests/test_speed.py): speed/fast.py is 7-17% faster a step on
    the CPU (docs/speed.md). "auto" keeps the plain layer on a GPU, where that is unmeasured,
    and in the labs' student copy, where infini.py is the student's own."""
    if name == "fast" or (name == "auto" and fast is not None and xp is np):
        return "fast", fast.ATTENTION
    return "plain", infini.PLAIN_ATTENTION


def decay_iters(c):
    """The step where the cosine reaches min_lr: lr_decay_iters, or the end of the run if 0."""
    return c["lr_decay_iters"] or c["max_iters"]


# -----------------------------------------------------------------------------
# data: data/<dataset>/{train.bin, val.bin, meta.pkl}, prepared on first use


def load_prepare(dataset):
    """The module data/<dataset>/prepare.py, imported by its path (data/ is not a package)."""
    path = os.path.join(ROOT, "data", dataset, "prepare.py")
    spec = importlib.util.spec_from_file_location(f"prepare_{dataset}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensure_dataset(dataset, data_dir, plays=None):
    """Run data/<dataset>/prepare.py's prepare() into data_dir if its files are missing.
    ValueError (one line) if data_dir cannot be written."""
    if all(os.path.exists(os.path.join(data_dir, f)) for f in ("train.bin", "val.bin", "meta.pkl")):
        return
    print(f"{data_dir} has no prepared data yet: running data/{dataset}/prepare.py")
    try:
        load_prepare(dataset).prepare(out_dir=data_dir, plays=plays)
    except OSError as e:
        raise ValueError(f"cannot prepare the data in {data_dir}: {e.strerror or e} "
                         f"(pass --data_dir=<a folder you can write>)") from None


def load_dataset(data_dir, dataset):
    """-> train ids, val ids (np.uint16 memmaps), and the dataset's meta dict. ValueError if
    data_dir holds another dataset than `dataset` (a char folder has itos, a BPE one an encoding)."""
    with open(os.path.join(data_dir, "meta.pkl"), "rb") as f:
        meta = pickle.load(f)
    kind = "shakespeare_char" if "itos" in meta else "shakespeare" if "encoding" in meta else None
    if kind is None:
        raise ValueError(f"--data_dir={data_dir}: its meta.pkl describes no dataset this script knows")
    if kind != dataset:
        raise ValueError(f"--data_dir={data_dir} holds the {kind} dataset, not {dataset}: "
                         f"pass --dataset={kind} or another --data_dir")
    splits = [np.memmap(os.path.join(data_dir, f"{s}.bin"), dtype=np.uint16, mode="r") for s in ("train", "val")]
    return splits[0], splits[1], meta


def tokenizer_meta(dataset, data_dir, data_meta):
    """A JSON-able description of the tokenizer, stored in the checkpoint so that sample.py
    needs nothing else: the characters (char level) or the BPE ranks themselves."""
    if "itos" in data_meta:
        return {"kind": "char", "itos": [data_meta["itos"][i] for i in range(data_meta["vocab_size"])]}
    if data_meta["encoding"] == "gpt2":  # tiktoken's own; it needs tiktoken's cache (or the network)
        return {"kind": "tiktoken", "name": "gpt2"}
    prep = load_prepare(dataset)
    tok = data_meta["tokenizer"]
    ranks = prep.load_tiktoken_bpe(os.path.join(data_dir, tok["file"]))  # {token bytes: rank}
    tokens = sorted(ranks, key=ranks.get)
    assert [ranks[t] for t in tokens] == list(range(len(tokens))), "BPE ranks must be 0..n-1"
    import base64
    return {"kind": "bpe", "name": tok["name"], "pat_str": tok["pat_str"],
            "ranks": [base64.b64encode(t).decode("ascii") for t in tokens]}  # token id i = ranks[i]


def get_batch(data, batch_size, block_size, rng):
    """Random contiguous windows of block_size + 1 tokens: inputs x and next-token targets y (B,T)."""
    if len(data) <= block_size:
        raise ValueError(f"a split of {len(data)} tokens is too short for --block_size={block_size}")
    ix = rng.integers(0, len(data) - block_size, size=batch_size)         # window starts
    w = np.stack([np.asarray(data[i:i + block_size + 1], dtype=np.int64) for i in ix])  # (B,T+1)
    return w[:, :-1], w[:, 1:]


# -----------------------------------------------------------------------------
# learning rate, evaluation, logging


def get_lr(step, c):
    """Linear warmup to learning_rate, then cosine decay to min_lr (infini.cosine_lr)."""
    return infini.cosine_lr(step, c["learning_rate"], c["min_lr"], c["warmup_iters"], decay_iters(c))


def estimate_loss(params, cfg, splits, c, step, xp, attention=infini.PLAIN_ATTENTION):
    """Mean loss over eval_iters batches of each split, each split across threads like a
    training step. The batches come from their own RNG, seeded by (seed, step), so evaluating
    never moves the training data stream."""
    out = {}
    for k, (name, data) in enumerate(splits.items()):
        rng = np.random.default_rng([c["seed"], step, k])
        losses = []
        for _ in range(c["eval_iters"]):
            x, y = get_batch(data, c["batch_size"], c["block_size"], rng)
            losses.append(parallel.loss(params, xp.asarray(x), xp.asarray(y), cfg, threads=c["threads"],
                                        attention=attention))
        out[name] = float(np.mean(losses))
    return out


def mean_gate(params, cfg):
    """The mean of sigmoid(beta) over every head and layer: the share of the memory read (Eq. 10)."""
    if cfg.memory == "none":
        return None
    betas = np.concatenate([infini.to_numpy(params[f"h.{l}.beta"]) for l in range(cfg.n_layer)])
    return float(np.mean(1.0 / (1.0 + np.exp(-betas.astype(np.float64)))))


def read_log(path, max_step=None):
    """The entries of log.jsonl (those up to max_step)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        entries = [json.loads(line) for line in f if line.strip()]
    return [e for e in entries if max_step is None or e["step"] <= max_step]


def plot_losses(entries, path):
    """loss.png: train and val loss at every evaluation."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [e["step"] for e in entries]
    ax.plot(steps, [e["train_loss"] for e in entries], "o-", label="train")
    ax.plot(steps, [e["val_loss"] for e in entries], "o-", label="val (held-out plays)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(os.path.basename(os.path.dirname(os.path.abspath(path))))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class StopRequest:
    """Ctrl-C sets a flag; the loop stops at the end of the current step, so the checkpoint
    never holds a half-updated model. A second Ctrl-C stops at once, without saving."""

    def __init__(self):
        self.requested = False
        self.old = None

    def handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to quit now)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self.old = signal.signal(signal.SIGINT, self.handler)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)


# -----------------------------------------------------------------------------
# training


def train(config=None):
    """Train with the settings in config (a dict; DEFAULTS fill in the rest, or on resume the
    checkpoint's settings). Returns a summary dict: the training losses of this call, the last
    evaluation, the step reached, the output paths, and whether Ctrl-C stopped it.
    Raises TrainingDiverged on a NaN/inf loss."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r}")
    c = {**DEFAULTS, **config}
    validate(c)
    out = c["out_dir"]
    ckpt_path, log_path = os.path.join(out, "ckpt.npz"), os.path.join(out, "log.jsonl")

    # the model, the optimiser and the data stream: new, or exactly as the checkpoint left them
    if c["init_from"] == "resume":
        params, opt, meta = checkpoint.load_checkpoint(ckpt_path)
        if opt is None:
            raise checkpoint.CheckpointError(f"{ckpt_path} has no optimiser state to resume from")
        # the checkpoint's settings, updated by those given now, except the model and dataset
        saved, fixed = meta["config"], ("dataset",) + MODEL_KEYS
        ignored = [k for k in fixed if k in config and config[k] != saved.get(k, DEFAULTS[k])]
        if ignored:
            print("resuming: keeping the checkpoint's " + ", ".join(f"{k}={saved.get(k, DEFAULTS[k])!r}"
                                                                   for k in ignored))
        c = {**DEFAULTS, **{k: v for k, v in saved.items() if k in DEFAULTS},
             **{k: v for k, v in config.items() if k not in fixed}, "out_dir": out, "init_from": "resume"}
        validate(c)
        cfg = infini.Config(**meta["model"])
        progress = {k: meta[k] for k in PROGRESS_KEYS}
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
    xp = infini.backend(c["device"])                                       # before any slow work
    device_name = infini.device_name(xp)
    layer = attention_layer(c["attention"], xp)
    data_dir = c["data_dir"] or os.path.join(ROOT, "data", c["dataset"])
    ensure_dataset(c["dataset"], data_dir)
    train_data, val_data, data_meta = load_dataset(data_dir, c["dataset"])
    splits = {"train": train_data, "val": val_data}
    for name, data in splits.items():
        if len(data) <= c["block_size"]:
            raise ValueError(f"the {name} split ({len(data):,} tokens) is too short for "
                             f"--block_size={c['block_size']}")
    tokenizer = tokenizer_meta(c["dataset"], data_dir, data_meta)
    if c["init_from"] == "resume" and tokenizer != meta["tokenizer"]:
        raise checkpoint.CheckpointError(f"the data in {data_dir} has another tokenizer than {ckpt_path}")
    # everything is checked: only now is out_dir touched
    created = checkpoint.claim_out_dir(out, resume=c["init_from"] == "resume", overwrite=c["overwrite"])
    if c["init_from"] == "resume":
        entries = read_log(log_path, max_step=progress["step"])  # forget log lines written after the checkpoint
        with open(log_path, "w") as f:
            f.writelines(json.dumps(e) + "\n" for e in entries)
    else:
        cfg = infini.Config(vocab_size=data_meta["vocab_size"], **{k: c[k] for k in MODEL_KEYS})
        params = infini.init_params(cfg, seed=c["seed"])
        opt = infini.adamw_init(params)
        progress = {"step": 0, "last_eval_step": None, "best_val_loss": None, "elapsed": 0.0, "eval": {}}
        rng = np.random.default_rng(c["seed"])                         # the training data stream
        for f in RUN_FILES:                                            # --overwrite=True: a new run
            if os.path.exists(os.path.join(out, f)):
                os.remove(os.path.join(out, f))
    params, opt = infini.to_device(xp, params, opt)
    try:
        return train_loop(c, cfg, params, opt, rng, progress, splits, tokenizer, device_name, layer)
    finally:
        checkpoint.remove_if_empty(created)  # a run that stopped before writing anything leaves no folder


def train_loop(c, cfg, params, opt, rng, progress, splits, tokenizer, device_name, layer):
    """train()'s loop: from progress (the checkpoint's step, last_eval_step, best_val_loss,
    elapsed, eval) to max_iters, evaluating and saving on the way, with layer = (name,
    attention) from attention_layer. -> train()'s summary."""
    out = c["out_dir"]
    ckpt_path, log_path, plot_path = (os.path.join(out, f) for f in RUN_FILES)
    train_data = splits["train"]
    xp = infini.get_array_module(params["wte"])
    layer_name, attention = layer
    step, last_eval_step, best_val = progress["step"], progress["last_eval_step"], progress["best_val_loss"]
    elapsed, last_eval = progress["elapsed"], progress["eval"]

    saved_step = step if c["init_from"] == "resume" else None              # the checkpoint on disk

    def save():
        nonlocal saved_step
        meta = {"config": c, "model": asdict(cfg), "step": step, "last_eval_step": last_eval_step,
                "best_val_loss": best_val, "eval": last_eval, "elapsed": elapsed,
                "tokens_seen": step * c["batch_size"] * c["block_size"], "rng": rng.bit_generator.state,
                "tokenizer": tokenizer, "device": device_name}
        checkpoint.save_checkpoint(ckpt_path, params, opt, meta)
        saved_step = step

    print(f"{infini.num_params(params):,} parameters, {cfg.n_layer} layers, {cfg.n_head} heads, "
          f"d_model {cfg.d_model}, segment {cfg.segment_len}, memory {cfg.memory!r}; "
          f"{c['dataset']} (vocab {cfg.vocab_size}, {len(train_data):,} train tokens); device {device_name}, "
          f"{layer_name} attention")
    tokens_per_step = c["batch_size"] * c["block_size"]
    losses, interrupted = [], False
    t_start, t_train, tokens_since = time.time(), 0.0, 0  # training time and tokens since the last eval
    bar = tqdm(total=c["max_iters"], initial=min(step, c["max_iters"]), desc="train", unit="step",
               dynamic_ncols=True, mininterval=0.5)
    with StopRequest() as stop, bar:
        while True:
            # evaluate, log and save every eval_interval steps, at the start and at the end
            due = step % c["eval_interval"] == 0 if c["eval_interval"] else step == 0
            if (due or step == c["max_iters"]) and step != last_eval_step:
                last_eval = estimate_loss(params, cfg, splits, c, step, xp, attention)
                if not all(math.isfinite(v) for v in last_eval.values()):
                    raise TrainingDiverged(f"the evaluation loss is {last_eval} at step {step}")
                last_eval_step = step
                elapsed += time.time() - t_start
                t_start = time.time()
                entry = {"step": step, "train_loss": last_eval["train"], "val_loss": last_eval["val"],
                         "lr": get_lr(step, c), "time": round(elapsed, 2),
                         "tokens_per_sec": round(tokens_since / t_train, 1) if t_train else None,
                         "gate": mean_gate(params, cfg)}
                t_train, tokens_since = 0.0, 0
                bar.write(f"step {step}: train loss {last_eval['train']:.4f}, val loss {last_eval['val']:.4f}")
                with open(log_path, "a") as f:
                    f.write(json.dumps(entry) + "\n")
                plot_losses(read_log(log_path), plot_path)
                improved = best_val is None or last_eval["val"] < best_val
                best_val = last_eval["val"] if improved else best_val
                if step > 0 and (improved or c["always_save_checkpoint"]):
                    save()
            if step >= c["max_iters"]:
                break
            if stop.requested:  # Ctrl-C: the last step is complete; keep it and stop
                elapsed += time.time() - t_start
                t_start = time.time()
                if saved_step != step:
                    save()
                interrupted = True
                break
            # one step of AdamW on a fresh random batch
            t0 = time.time()
            lr = get_lr(step, c)
            x, y = get_batch(train_data, c["batch_size"], c["block_size"], rng)
            loss, grads = parallel.loss_and_grads(params, xp.asarray(x), xp.asarray(y), cfg, threads=c["threads"],
                                                  attention=attention)
            norm = infini.clip_grad_norm(grads, c["grad_clip"])
            if not (math.isfinite(loss) and math.isfinite(norm)):
                kept = (f"the last good checkpoint, step {saved_step}, stays in {ckpt_path}"
                        if saved_step is not None else "no checkpoint was saved")
                raise TrainingDiverged(f"the loss is {loss} (gradient norm {norm:.3g}) at step {step}: "
                                       f"stopping; {kept}. Try a lower --learning_rate")
            infini.adamw_step(params, grads, opt, lr, weight_decay=c["weight_decay"],
                              betas=(c["beta1"], c["beta2"]), beta_lr_mult=c["beta_lr_mult"])
            step += 1
            losses.append(loss)
            t_train += time.time() - t0
            tokens_since += tokens_per_step
            bar.update(1)
            if step % c["log_interval"] == 0:
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_since / max(t_train, 1e-9):,.0f}", lr=f"{lr:.1e}")
    return {"losses": losses, "eval": last_eval, "step": step, "best_val_loss": best_val,
            "ckpt": ckpt_path, "log": log_path, "plot": plot_path, "interrupted": interrupted,
            "elapsed": elapsed + time.time() - t_start}


def main(config):
    """The command line around train(): one-line errors, exit status 0 / 1 / 2 / 130."""
    t0 = time.time()
    parallel.keep_freed_memory()  # large temporaries reuse freed memory (speed/parallel.py)
    try:
        result = train(config)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except checkpoint.CheckpointError as e:  # none to resume from, a corrupt one, a failed save
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # --device=cuda without a GPU, a split shorter than block_size, an out_dir
        print(f"error: {e}", file=sys.stderr)  # that cannot be written or holds another run
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C
        print("\ninterrupted: stopped without saving", file=sys.stderr)
        return 130
    out, ev = os.path.dirname(result["ckpt"]), result["eval"]
    if result["interrupted"]:
        print(f"interrupted: saved step {result['step']} to {result['ckpt']}; "
              f"go on with: python train.py --init_from=resume --out_dir={out}")
        return 0
    losses = f"train loss {ev['train']:.4f}, val loss {ev['val']:.4f}" if ev else "no evaluation this time"
    print(f"done: step {result['step']} in {(time.time() - t0) / 60:.1f} min; {losses}")
    print(f"outputs in {out}/: ckpt.npz (checkpoint), log.jsonl (evaluations), loss.png (loss curve)")
    print(f"sample from it: python sample.py --out_dir={out}")
    return 0


if __name__ == "__main__":
    argv = sys.argv[1:]
    configurator.apply(dict(DEFAULTS), argv, validate, __doc__)  # --help; any bad setting: one line, exit 2
    sys.exit(main(configurator.overrides(argv, DEFAULTS)))     # only what was set: resume fills in the rest
