"""
nanogpt_compare.py: `python train.py` beside nanoGPT and beside no memory, at the same wall time.

Three runs per seed, one after another on this machine, nothing else running:

    nanogpt   nanoGPT's own CPU recipe from its README (4 layers, 4 heads, n_embd 128,
              block 64, batch 12, lr 1e-3, dropout 0, --compile=False), nanogpt_iters steps
    ours      `python train.py`: this project's default model and recipe
    none      the same with --memory=none: local attention only, for none_iters steps
              (a step without memory is faster: the same wall time buys more of them)

The wall time of each run is measured around its whole command (start-up, evaluations and
saves included), so "the same time" is what a person waiting for it sees. Every run
evaluates and saves at its start and its end only (nanoGPT: eval_interval = max_iters;
ours: --eval_interval=0, which trains exactly the weights of the evaluating default). Then every
model is scored the same way on the first eval_len characters of each of the four held-out
plays (heldout.py): a model with memory streams each play through infini.forward_stream;
a model without memory (ours with --memory=none, and nanoGPT) reads sliding windows of its
context (segment_len, or nanoGPT's block_size) moved by half of it, so that every
prediction sees at least half a window of earlier text. The loss is the mean over every
predicted character; "names" is the mean over the characters of the speaker-name lines
("HAMLET:"), where who is on stage was settled far back; "seg. start" over the first 16
characters of every segment after the first (nanoGPT's windows are cut the same way).
Both of ours are also scored "chunked", every segment read alone: for none that is its
context restarting at every segment, at the compute of streaming; for ours it is the same
trained model with its memory emptied at every segment, so "ours" minus "ours, memory
emptied" is what the memory itself adds.

nanoGPT is not a dependency: fetch it and PyTorch (CPU) yourself. It reads our
data/shakespeare_char/{train,val}.bin and meta.pkl as they are.

    git clone https://github.com/karpathy/nanoGPT ../nanoGPT && pip install -r requirements-compare.txt
    python nanogpt_compare.py --nanogpt=../nanoGPT                        # 11-17 min a seed on 2 CPU cores
    python nanogpt_compare.py --nanogpt=../nanoGPT --seeds=1337,1338,1339
    python nanogpt_compare.py --nanogpt=../nanoGPT --train=False          # score the runs already there
    python nanogpt_compare.py --nanogpt=../nanoGPT --ours="--block_size=256 --batch_size=12 --max_iters=1000"

nanoGPT has no seed setting (it seeds torch with 1337 + its rank); here it runs through a
two-line wrapper that adds (seed - 1337) to that seed, so seed 1337 is nanoGPT as shipped.
"""
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

import checkpoint
import configurator
import heldout

# -----------------------------------------------------------------------------
# settings: plain variables, overridden by a config file or --key=value (configurator.py)
nanogpt = ""               # the folder of a nanoGPT clone (its train.py and model.py)
seeds = "1337,1338"        # one run of each kind per seed; seed 1337 is nanoGPT as shipped
runs = "nanogpt,ours,none"  # which kinds to train and score
train = True               # False: score the checkpoints already in out_prefix-<kind>-<seed>/
overwrite = False          # True: replace checkpoints already in those folders
out_prefix = "out-cmp"     # runs go to out-cmp-nanogpt-1337/, out-cmp-ours-1337/, out-cmp-none-1337/, ...
nanogpt_iters = 4800       # nanoGPT's optimiser steps (its README's recipe, run for about our time)
ours = ""                  # extra train.py arguments for ours and none, e.g. "--learning_rate=2e-3"
none_iters = 3000          # none's steps (after --ours): its step is 7-12% faster, so the same time buys more (0: as ours)
eval_len = 32768           # score the first eval_len characters of each held-out play (0: whole plays)
results = "out-cmp/results.json"  # everything measured
# -----------------------------------------------------------------------------
DEFAULTS = configurator.defaults(globals())

ROOT = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(ROOT, "data", "shakespeare_char")
KINDS = ("nanogpt", "ours", "none")

# nanoGPT's README, "I only have a macbook": its CPU recipe (max_iters is nanogpt_iters).
# eval_interval = max_iters: it evaluates at the start and the end only, and saves the end.
NANOGPT_RECIPE = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
                  "--log_interval=100", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
                  "--n_embd=128", "--dropout=0.0", "--always_save_checkpoint=True"]
SEEDED = ("import runpy, sys, torch; seed = torch.manual_seed; "
          "torch.manual_seed = lambda s: seed(s + {offset}); "
          "sys.argv = ['train.py'] + sys.argv[1:]; runpy.run_path('train.py', run_name='__main__')")


def parse_list(text, allowed=None, kind=str, key=""):
    items = [x.strip() for x in text.split(",") if x.strip()]
    try:
        items = [kind(x) for x in items]
    except ValueError:
        raise ValueError(f"--{key} takes a comma-separated list, got {text!r}") from None
    if not items or (allowed and not set(items) <= set(allowed)):
        raise ValueError(f"--{key} takes a comma-separated subset of {','.join(allowed)}, got {text!r}"
                         if allowed else f"--{key} is empty")
    return items


def out_dir(c, kind, seed):
    return f"{c['out_prefix']}-{kind}-{seed}"


def ckpt_path(c, kind, seed):
    return os.path.join(out_dir(c, kind, seed), "ckpt.pt" if kind == "nanogpt" else "ckpt.npz")


def command(c, kind, seed):
    """-> (argv, cwd) of one training run."""
    if kind == "nanogpt":
        return ([sys.executable, "-c", SEEDED.format(offset=seed - 1337)] + NANOGPT_RECIPE +
                [f"--max_iters={c['nanogpt_iters']}", f"--lr_decay_iters={c['nanogpt_iters']}",
                 f"--eval_interval={c['nanogpt_iters']}", f"--dataset={DATA_DIR}",
                 f"--out_dir={os.path.abspath(out_dir(c, kind, seed))}"], os.path.abspath(c["nanogpt"]))
    extra = []
    if kind == "none":
        extra = ["--memory=none"] + ([f"--max_iters={c['none_iters']}"] if c["none_iters"] else [])
    # evaluate at the start and the end only, as nanoGPT does here: the same weights as python train.py
    return ([sys.executable, "train.py", f"--seed={seed}", f"--out_dir={os.path.abspath(out_dir(c, kind, seed))}",
             f"--overwrite={c['overwrite']}", "--device=cpu", "--eval_interval=0"] + shlex.split(c["ours"]) + extra,
            ROOT)


def shown(argv):
    """A command as a person would type it."""
    if argv[1] == "-c":
        return "python train.py " + " ".join(argv[3:]) + "   (nanoGPT, seeded)"
    return "python " + " ".join(argv[1:])


def train_all(c, kinds, seed_list):
    """Every run, one after another. -> {(kind, seed): seconds}."""
    for seed in seed_list:  # every folder is checked before the first training starts
        for kind in kinds:
            name = os.path.basename(ckpt_path(c, kind, seed))
            checkpoint.remove_if_empty(checkpoint.claim_out_dir(out_dir(c, kind, seed), resume=False,
                                                                overwrite=c["overwrite"], ckpt_name=name))
    times = {}
    for seed in seed_list:
        for kind in kinds:
            argv, cwd = command(c, kind, seed)
            print(f"$ {shown(argv)}", flush=True)
            log = os.path.join(out_dir(c, kind, seed), "train.log") if kind == "nanogpt" else None
            t0 = time.time()
            if log:  # nanoGPT prints a line per log_interval; keep it beside its checkpoint
                os.makedirs(out_dir(c, kind, seed), exist_ok=True)
                with open(log, "w") as f:
                    rc = subprocess.run(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode
            else:
                rc = subprocess.run(argv, cwd=cwd).returncode
            if rc != 0:
                raise RuntimeError(f"training {kind} (seed {seed}) failed" + (f": see {log}" if log else ""))
            times[(kind, seed)] = time.time() - t0
            print(f"{kind}, seed {seed}: trained in {times[(kind, seed)] / 60:.1f} min", flush=True)
    return times


# -----------------------------------------------------------------------------
# scoring


def nanogpt_losses(path, root, plays):
    """Per-character losses of a nanoGPT checkpoint in sliding windows of its block_size
    moved by half of it (as heldout.sliding_losses). -> losses, its block_size, its iter_num."""
    import torch
    if os.path.abspath(root) not in sys.path:
        sys.path.insert(0, os.path.abspath(root))
    from model import GPT, GPTConfig   # nanoGPT's model.py
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = GPT(GPTConfig(**ck["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ck["model"].items()})
    model.eval()
    N = ck["model_args"]["block_size"]
    stride = max(1, N // 2)
    ids = np.stack([p for _, p in plays])
    B, T = ids.shape[0], ids.shape[1] - 1
    losses = np.empty((B, T))
    with torch.no_grad():
        for t0 in range(0, T, stride):
            t1 = min(t0 + stride, T)
            w0 = max(0, t1 - N)
            x = torch.from_numpy(np.ascontiguousarray(ids[:, w0:t1]))
            logits, _ = model(x, x)  # with targets, nanoGPT returns the logits of every position
            losses[:, t0:t1] = heldout.token_losses(logits[:, t0 - w0:].double().numpy(), ids[:, t0 + 1:t1 + 1])
    return list(losses), N, ck.get("iter_num")


def row(kind, seed, mode, step, losses, N, plays, names):
    return {"kind": kind, "seed": seed, "mode": mode, "step": step,
            "loss": float(np.concatenate(losses).mean()),
            "names": heldout.mean_where(losses, names),
            "other": heldout.mean_where(losses, [~m for m in names]),
            "segment_start": heldout.segment_start_loss(losses, N),
            "plays": {n: float(x.mean()) for (n, _), x in zip(plays, losses)}}


def score(c, kind, seed, plays, names):
    """The rows of one run's checkpoint: its losses on the held-out plays. Each of ours gets
    a second row, "chunked": every segment read alone (heldout.py). For none that is the same
    compute as streaming the memory model; for ours it is the same model with its memory
    emptied at every segment, so the difference to its first row is what the memory adds.
    names: heldout.speaker_name_masks(plays, itos), made once for all runs."""
    path = ckpt_path(c, kind, seed)
    if not os.path.exists(path):
        raise checkpoint.CheckpointError(f"{path} does not exist: train it first (--train=True)")
    if kind == "nanogpt":
        losses, N, step = nanogpt_losses(path, c["nanogpt"], plays)
        return [row(kind, seed, f"sliding {N}", step, losses, N, plays, names)]
    params, cfg, meta = checkpoint.load_model(path, "cpu")
    rows = []
    for mode in ("stream" if cfg.memory != "none" else "sliding", "chunked"):
        losses, _ = heldout.play_losses(params, cfg, plays, mode)
        label = {"none": "none, chunked", "ours": "ours, memory emptied"}[kind] if mode == "chunked" else kind
        rows.append(row(label, seed, f"{mode} {cfg.segment_len}", meta.get("step"), losses, cfg.segment_len,
                        plays, names))
    return rows


def mean_spread(values):
    """'1.234 +- 0.005' (mean, half the range) or '1.234' for one value."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} +- {(max(values) - min(values)) / 2:.3f}"


def report(rows):
    lines = ["| run | seed | steps | wall time | held-out loss | names | other chars | seg. start | read as |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wall = f"{r['seconds'] / 60:.1f} min" if r.get("seconds") else "-"
        lines.append(f"| {r['kind']} | {r['seed']} | {r['step']} | {wall} | {r['loss']:.3f} | {r['names']:.3f} | "
                     f"{r['other']:.3f} | {r['segment_start']:.3f} | {r['mode']} |")
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    lines += ["", "| run | seeds | wall time | held-out loss | names | other chars | seg. start |",
              "|---|---|---|---|---|---|---|"]
    for k in kinds:
        rs = [r for r in rows if r["kind"] == k]
        secs = [r["seconds"] for r in rs if r.get("seconds")]
        wall = f"{np.mean(secs) / 60:.1f} min" if secs else "-"
        lines.append(f"| {k} | {len(rs)} | {wall} | " + " | ".join(mean_spread([r[key] for r in rs]) for key in
                                                                 ("loss", "names", "other", "segment_start")) + " |")
    lines += ["", "nats per character, mean over seeds +- half their range; names: the speaker-name lines; "
              "seg. start: the first 16 characters of every segment (window) after the first."]
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# command line


def validate(c):
    kinds = parse_list(c["runs"], KINDS, key="runs")
    parse_list(c["seeds"], kind=int, key="seeds")
    if c["nanogpt_iters"] < 1:
        raise ValueError(f"--nanogpt_iters must be at least 1, got {c['nanogpt_iters']}")
    if c["none_iters"] < 0:
        raise ValueError(f"--none_iters must not be negative, got {c['none_iters']}")
    if c["eval_len"] < 0:
        raise ValueError(f"--eval_len must not be negative, got {c['eval_len']}")
    if "nanogpt" in kinds:
        if not c["nanogpt"]:
            raise ValueError("--nanogpt=PATH: the folder of a nanoGPT clone "
                             "(git clone https://github.com/karpathy/nanoGPT), or leave it out with --runs=ours,none")
        for f in ("train.py", "model.py"):
            if not os.path.isfile(os.path.join(c["nanogpt"], f)):
                raise ValueError(f"--nanogpt={c['nanogpt']} has no {f}: is it a nanoGPT clone?")
        if importlib.util.find_spec("torch") is None:
            raise ValueError("nanoGPT needs PyTorch: pip install -r requirements-compare.txt (CPU is enough)")
    try:
        shlex.split(c["ours"])
    except ValueError as e:
        raise ValueError(f"--ours is not a valid argument list: {e}") from None


def main(c):
    t_start = time.time()
    kinds = parse_list(c["runs"], KINDS, key="runs")
    seed_list = parse_list(c["seeds"], kind=int, key="seeds")
    if not os.path.exists(os.path.join(DATA_DIR, "meta.pkl")):
        print("error: no data in data/shakespeare_char: run python data/shakespeare_char/prepare.py (or train.py)",
              file=sys.stderr)
        return 2
    try:
        times = train_all(c, kinds, seed_list) if c["train"] else {}
    except checkpoint.OutDirError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    plays, meta = heldout.load_val_plays(DATA_DIR, c["eval_len"])
    print(f"scoring on {len(plays)} held-out plays, {sum(len(p) - 1 for _, p in plays):,} characters")
    names = heldout.speaker_name_masks(plays, meta["itos"])   # one mask per play, for every run
    rows = []
    try:
        for seed in seed_list:
            for kind in kinds:
                for r in score(c, kind, seed, plays, names):
                    r["seconds"] = times.get((kind, seed))
                    rows.append(r)
                    print(f"{r['kind']}, seed {seed}: {r['loss']:.4f} ({r['mode']})", flush=True)
    except checkpoint.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print()
    print(report(rows))
    os.makedirs(os.path.dirname(os.path.abspath(c["results"])), exist_ok=True)
    with open(c["results"], "w") as f:
        json.dump({"settings": c, "rows": rows, "seconds": time.time() - t_start}, f, indent=1)
    print(f"\nwrote {c['results']}; done in {(time.time() - t_start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main(configurator.apply(dict(DEFAULTS), sys.argv[1:], validate, __doc__)))
