"""
longctx.py: long context in miniature, the paper's Table 1 and Table 2 on Shakespeare.

Four char-level models are trained with the same budget (steps, batch, tokens) on
sequences of block_size = 1024 characters:

    delta      Infini-attention, delta rule (Eq. 9), segments of N = 128 (8 per sequence)
    linear     Infini-attention, linear rule (Eq. 8), N = 128
    none       local attention only, N = 128: what the memory adds to it is the question
    quadratic  local attention only, one segment of N = block_size = 1024: an ordinary
               causal Transformer over the whole training sequence (quadratic in T)

Then each held-out play (the first eval_len characters of each of the 4 val plays) is
read from its start through infini.forward_stream, N tokens at a time, with a state that
never grows, and the loss of every next-character prediction is kept. Their mean in
position buckets (0-256, 256-1K, ...) says how much the loss drops as more of the play
has been read: only a memory can carry anything further back than one segment.
The models without memory cannot read past their segment; they are evaluated in windows
of their segment_len, "chunked" (the context restarts every N tokens: exactly what
streaming them gives) and "sliding" (windows of N moved N/2 at a time, so every
prediction sees at least N/2 earlier tokens; twice the compute). The column "seg. start"
is the mean loss of the first 16 tokens of every segment after the first: there the local
attention has seen almost nothing, so a useful memory should show there first.

Printed (and saved to out-lc-eval/results.json): a Table-2-style comparison (loss, perplexity,
bits per character, per bucket and overall), and Table 1's memory footprint,
L*H*D*(D+1) numbers for the compressive memory, beside the streaming state measured
(infini.memory_numbers / state_numbers) and the compression ratio against a KV cache of
all T tokens, 2*L*T*C numbers. assets/longctx_loss.png plots the loss against position.

    OPENBLAS_NUM_THREADS=1 python longctx.py --train   # train the four (~25 min on 2 CPU cores), then evaluate
    python longctx.py                                   # evaluate out-lc-*/ckpt.npz again
    python longctx.py --eval_len=0                      # the whole plays (slower)
    python longctx.py --ckpts=delta256=out-shakespeare-char/ckpt.npz,none256=out-shakespeare-char-none/ckpt.npz
    python gates.py out-lc-delta/ckpt.npz out-lc-linear/ckpt.npz   # the gate figure (Figure 3)
"""
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
from tqdm import tqdm

import checkpoint
import configurator
import heldout
import infini

# -----------------------------------------------------------------------------
# settings: plain variables, overridden by a config file or --key=value (configurator.py)
# training (train.py's CLI, once per model; every model gets the same budget)
train = False              # --train: train the four models first (else evaluate existing checkpoints)
overwrite = False          # True: --train may replace the checkpoints already in out_prefix-<name>/
models = "delta,linear,none,quadratic"  # which of the four; "quadratic" is memory none with N = block_size
out_prefix = "out-lc"      # checkpoints go to out-lc-delta/, out-lc-linear/, out-lc-none/, out-lc-quadratic/
block_size = 1024          # tokens per training sequence: 8 segments of 128
segment_len = 128          # N of the three segmented models
batch_size = 3             # 3 x 1024 = 3,072 tokens per step
max_iters = 600            # steps (lr_decay_iters too): ~25 min for all four on 2 CPU cores
eval_interval = 200        # train.py's evaluation and checkpoint interval
# evaluation
ckpts = ""                 # "name=path,name=path": evaluate these instead of out_prefix-<name>/ckpt.npz
dataset = "shakespeare_char"
data_dir = ""              # "" = data/<dataset> (run train.py or data/<dataset>/prepare.py first)
eval_len = 32768           # read the first eval_len characters of each held-out play (0: whole plays)
buckets = "0,256,1024,4096,16384,32768"  # position bucket edges (characters read so far)
window = "chunked,sliding"  # how the models without memory read past their segment: chunked, sliding or both
results = "out-lc-eval/results.json"  # everything measured (git-ignored, as every out*/ folder)
plot = "assets/longctx_loss.png"  # loss against position ("" for none)
device = "auto"            # "auto" (a GPU if CuPy finds one), "cpu" or "cuda"; for training and evaluation
# -----------------------------------------------------------------------------
DEFAULTS = configurator.defaults(globals())

ROOT = os.path.dirname(os.path.abspath(__file__))
KINDS = ("delta", "linear", "none", "quadratic")
WINDOWS = ("chunked", "sliding")


# -----------------------------------------------------------------------------
# training: train.py's command line, once per model


def train_command(name, c):
    """The train.py command line (a list) that trains model `name` with the shared budget."""
    memory = "none" if name == "quadratic" else name
    n = c["block_size"] if name == "quadratic" else c["segment_len"]
    return [sys.executable, "train.py", f"--out_dir={c['out_prefix']}-{name}", f"--memory={memory}",
            f"--segment_len={n}", f"--block_size={c['block_size']}", f"--batch_size={c['batch_size']}",
            f"--max_iters={c['max_iters']}", f"--lr_decay_iters={c['max_iters']}",
            f"--warmup_iters={min(100, c['max_iters'])}", f"--eval_interval={c['eval_interval']}",
            f"--dataset={c['dataset']}", f"--device={c['device']}", f"--overwrite={c['overwrite']}"]


def train_all(c):
    """Run the trainings one after another. -> {name: seconds}."""
    for name in parse_names(c["models"]):  # every out_dir is checked before the first training starts
        checkpoint.remove_if_empty(checkpoint.claim_out_dir(f"{c['out_prefix']}-{name}", resume=False,
                                                            overwrite=c["overwrite"]))
    times = {}
    for name in parse_names(c["models"]):
        cmd = train_command(name, c)
        print("$ " + " ".join(cmd[1:] if cmd[0] == sys.executable else cmd).replace("train.py", "python train.py", 1))
        t0 = time.time()
        if subprocess.run(cmd, cwd=ROOT).returncode != 0:
            raise RuntimeError(f"training {name} failed (its error is above)")
        times[name] = time.time() - t0
        print(f"{name}: trained in {times[name] / 60:.1f} min")
    return times


# -----------------------------------------------------------------------------
# memory footprint: Table 1 of the paper, and what the streaming state holds


def footprint(params, cfg, T):
    """Numbers per sequence: the compressive memory by Table 1's formula L*H*D*(D+1) and as
    measured (infini.memory_numbers), the largest streaming state measured (memory plus the
    K, V of an unfinished segment of N-1 tokens, infini.state_numbers), and a KV cache of all
    T tokens, 2*L*T*C, which a Transformer needs to attend over T tokens at once."""
    L, H, D, C, N = cfg.n_layer, cfg.n_head, cfg.head_size, cfg.d_model, cfg.segment_len
    formula = L * H * D * (D + 1) if cfg.memory != "none" else 0
    xp = infini.get_array_module(params["wte"])
    state = infini.init_state(params, cfg)
    _, state = infini.forward_stream(params, xp.zeros((1, N), dtype=np.int64), state, cfg)  # a whole segment
    measured = infini.memory_numbers(state)
    if N > 1:
        _, state = infini.forward_stream(params, xp.zeros((1, N - 1), dtype=np.int64), state, cfg)
    kv = 2 * L * T * C
    return {"memory_formula": formula, "memory_measured": measured, "state_max": infini.state_numbers(state),
            "state_formula": formula + 2 * L * (N - 1) * C, "kv_cache": kv, "T": T,
            "compression": kv / formula if formula else None}


# -----------------------------------------------------------------------------
# the whole evaluation and its tables


def evaluate(name, path, plays, edges, windows=WINDOWS, device="auto"):
    """The rows of one checkpoint: one for a memory model (streamed), one per window mode
    for a model without memory. Each row is a dict (see report())."""
    params, cfg, meta = checkpoint.load_model(path, device)
    vocab = max(int(ids.max()) for _, ids in plays) + 1
    if vocab > cfg.vocab_size:
        raise ValueError(f"{path}: the data has token ids up to {vocab - 1}, the model's vocab is {cfg.vocab_size}")
    modes = ["stream"] if cfg.memory != "none" else list(windows)
    T = max(len(ids) - 1 for _, ids in plays)
    fp = footprint(params, cfg, T)
    rows = []
    for mode in modes:
        t0 = time.time()
        total = sum(len(ids) - 1 for _, ids in plays)
        label = name if mode == "stream" else f"{name} ({mode} {cfg.segment_len})"
        with tqdm(total=total, desc=label, unit="tok", leave=False, dynamic_ncols=True) as bar:
            losses, biggest = heldout.play_losses(params, cfg, plays, "sliding" if mode == "sliding" else "stream", bar)
        means, counts = heldout.bucket_means(losses, edges)
        overall = float(np.concatenate(losses).mean())
        curve = heldout.position_curve(losses)
        rows.append({"name": label, "model": name, "ckpt": path, "mode": mode, "memory": cfg.memory,
                     "segment_len": cfg.segment_len, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
                     "d_model": cfg.d_model, "step": meta.get("step"),
                     "val_loss_train_py": (meta.get("eval") or {}).get("val"),
                     "buckets": means, "bucket_tokens": counts, "loss": overall,
                     "segment_start": heldout.segment_start_loss(losses, cfg.segment_len), "seconds": time.time() - t0,
                     "state_seen": biggest, "footprint": fp, "curve": [list(map(float, x)) for x in curve],
                     "plays": [{"name": n, "tokens": len(x), "loss": float(x.mean())}
                               for (n, _), x in zip(plays, losses)]})
    return rows


def fmt_count(n):
    """1234567 -> '1.23M'."""
    if n is None:
        return "-"
    for unit, size in (("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def bucket_names(edges):
    def k(n):
        return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)
    return [f"{k(a)}-{k(b)}" for a, b in zip(edges[:-1], edges[1:])]


def report(rows, edges):
    """The two markdown tables (Table 2 and Table 1 style) as one string."""
    names = bucket_names(edges)
    lines = ["Held-out loss by position in the play (nats per character; each play read from its start):", "",
             "| model | memory size (comp.) | " + " | ".join(names) + " | all: loss | ppl | bpc | seg. start |",
             "|---|---|" + "---|" * len(names) + "---|---|---|---|"]
    for r in rows:
        fp = r["footprint"]
        if r["memory"] != "none":
            size = f"{fmt_count(fp['memory_formula'])} ({fp['compression']:.0f}x)"
        else:
            size = f"- (window {r['segment_len']})"
        cells = [f"{m:.3f}" if not math.isnan(m) else "-" for m in r["buckets"]]
        lines.append(f"| {r['name']} | {size} | " + " | ".join(cells) +
                     f" | {r['loss']:.3f} | {math.exp(r['loss']):.2f} | {r['loss'] / math.log(2):.3f}"
                     f" | {r['segment_start']:.3f} |".replace("nan", "-"))
    T = rows[0]["footprint"]["T"] if rows else 0
    lines += ["", "seg. start: the mean loss of the first 16 tokens of every segment after the first "
              "(the local attention has seen almost nothing there; chunked windows restart there too).",
              "memory size: numbers per sequence of the compressive memory, Table 1; comp.: a KV cache of all "
              "T tokens divided by it.", "",
              f"Memory footprint per sequence, in numbers (paper Table 1; KV cache for T = {T:,} tokens):", "",
              "| model | L, H, D, N | memory L*H*D*(D+1) | measured memory | state max (formula / measured) "
              "| KV cache 2*L*T*C | compression |",
              "|---|---|---|---|---|---|---|"]
    seen = set()
    for r in rows:
        if r["model"] in seen:
            continue
        seen.add(r["model"])
        fp = r["footprint"]
        comp = f"{fp['compression']:.0f}x" if fp["compression"] else "-"
        lines.append(f"| {r['model']} | {r['n_layer']}, {r['n_head']}, {r['d_model'] // r['n_head']}, "
                     f"{r['segment_len']} | {fp['memory_formula']:,} | {fp['memory_measured']:,} | "
                     f"{fp['state_formula']:,} / {fp['state_max']:,} | {fp['kv_cache']:,} | {comp} |")
    return "\n".join(lines)


def plot_curves(rows, edges, path, reference="none"):
    """Loss against position (log scale), one line per row, the bucket edges dotted; and
    beside it each row minus the reference model's streamed (chunked) row, if there is one."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ref = [r for r in rows if r["model"] == reference and r["mode"] in ("stream", "chunked")]
    fig, axes = plt.subplots(1, 2 if ref else 1, figsize=(13 if ref else 7, 4), squeeze=False)
    ax = axes[0][0]
    for r in rows:
        x, y = r["curve"]
        ax.plot(x, y, label=f"{r['name']}: {r['loss']:.3f}", lw=1.5, ls="--" if r["mode"] == "sliding" else "-")
    ax.set_ylabel("held-out loss (nats per character)")
    ax.set_title(f"loss by position, {len(rows[0]['plays'])} held-out plays")
    ax.legend(fontsize=8)
    if ref:
        ax = axes[0][1]
        y0 = np.array(ref[0]["curve"][1])
        for r in rows:
            x, y = r["curve"]
            ax.plot(x, np.array(y) - y0, lw=1.5, ls="--" if r["mode"] == "sliding" else "-", label=r["name"])
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel(f"loss minus {ref[0]['name']}'s")
        ax.set_title("below 0: better than local attention alone")
    for ax in axes[0]:
        for e in edges[1:-1]:
            ax.axvline(e, color="grey", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("position in the play (characters read)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# -----------------------------------------------------------------------------
# command line


def parse_names(text):
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in names if x not in KINDS]
    if bad or not names:
        raise ValueError(f"--models takes a comma-separated subset of {','.join(KINDS)}; got {text!r}")
    return names


def parse_ckpts(c):
    """-> [(name, path)] to evaluate."""
    if c["ckpts"]:
        pairs = []
        for item in c["ckpts"].split(","):
            name, eq, path = item.partition("=")
            if not eq or not name or not path:
                raise ValueError(f"--ckpts takes name=path,name=path; got {item!r}")
            pairs.append((name, path))
        return pairs
    return [(n, os.path.join(f"{c['out_prefix']}-{n}", "ckpt.npz")) for n in parse_names(c["models"])]


def parse_edges(text):
    try:
        edges = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--buckets takes comma-separated integers, got {text!r}") from None
    if len(edges) < 2 or edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"--buckets must be increasing and start at 0, got {text!r}")
    return edges


def validate(c):
    parse_names(c["models"])
    parse_ckpts(c)
    parse_edges(c["buckets"])
    for key in ("block_size", "segment_len", "batch_size", "max_iters", "eval_interval"):
        if c[key] < 1:
            raise ValueError(f"--{key} must be at least 1, got {c[key]}")
    if c["eval_len"] < 0:
        raise ValueError(f"--eval_len must not be negative, got {c['eval_len']}")
    if not set(w.strip() for w in c["window"].split(",")) <= set(WINDOWS):
        raise ValueError(f"--window takes chunked, sliding or chunked,sliding; got {c['window']!r}")
    if c["device"] not in ("cpu", "cuda", "auto"):
        raise ValueError(f"--device must be one of cpu, cuda, auto; got {c['device']!r}")


def main(c):
    t_start = time.time()
    try:
        infini.backend(c["device"])  # --device=cuda without a GPU: say so before any work
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        train_times = train_all(c) if c["train"] else {}
    except checkpoint.OutDirError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    data_dir = c["data_dir"] or os.path.join(ROOT, "data", c["dataset"])
    plays, _ = heldout.load_val_plays(data_dir, c["eval_len"])
    edges = parse_edges(c["buckets"])
    T = max(len(ids) - 1 for _, ids in plays)
    edges = [e for e in edges if e < T] + [T]                                 # the last bucket ends at T
    print(f"reading {len(plays)} held-out plays, {T:,} characters each at most: "
          + ", ".join(f"{n} ({len(ids) - 1:,})" for n, ids in plays))
    windows = [w.strip() for w in c["window"].split(",") if w.strip()]
    rows = []
    try:
        for name, path in parse_ckpts(c):
            t0 = time.time()
            rows += evaluate(name, path, plays, edges, windows, c["device"])
            print(f"{name}: evaluated in {time.time() - t0:.0f}s ({path})")
    except checkpoint.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print()
    print(report(rows, edges))
    out = {"settings": c, "edges": edges, "train_seconds": train_times, "rows": rows,
           "seconds": time.time() - t_start}
    os.makedirs(os.path.dirname(os.path.abspath(c["results"])), exist_ok=True)
    with open(c["results"], "w") as f:
        json.dump(out, f, indent=1)
    print(f"\nwrote {c['results']}" + (f" and {c['plot']}" if c["plot"] else ""))
    if c["plot"]:
        plot_curves(rows, edges, c["plot"])
    if train_times:
        print("training times: " + ", ".join(f"{n} {s / 60:.1f} min" for n, s in train_times.items()))
    print(f"done in {(time.time() - t_start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main(configurator.apply(dict(DEFAULTS), sys.argv[1:], validate, __doc__)))
