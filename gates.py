"""
gates.py: the gate figure (paper, Figure 3): sigmoid(beta) of every head in every layer.

Each Infini-attention head mixes its two reads with a learned gate (Eq. 10):
    A = g * A_mem + (1 - g) * A_dot,   g = sigmoid(beta)
The paper finds two kinds of heads after training: specialised heads, whose gate is near
1 (they read the compressive memory) or near 0 (they read the local segment only), and
mixer heads, whose gate stays near 0.5 and blend both. Here a head is "memory" when
g > hi, "local" when g < lo (both specialised), and "mixer" otherwise.

    python gates.py out-lc-delta/ckpt.npz                      # table + assets/gates.png
    python gates.py out-lc-delta/ckpt.npz out-lc-linear/ckpt.npz --out=assets/gates.png
    python gates.py out-lc-delta/ckpt.npz --lo=0.1 --hi=0.9

Checkpoints are the positional arguments (train.py's ckpt.npz, or any checkpoint.py file
whose meta has a "model" config); settings are --key=value.
"""
import os
import sys

import numpy as np

import checkpoint
import configurator
import infini

# -----------------------------------------------------------------------------
out = "assets/gates.png"   # where the figure goes
lo = 0.2                   # g < lo: a specialised local head
hi = 0.8                   # g > hi: a specialised memory head
# -----------------------------------------------------------------------------
DEFAULTS = configurator.defaults(globals())


def gate_values(params, cfg):
    """sigmoid(beta) of every head: (L, H) float64 NumPy array. ValueError for memory 'none'."""
    if cfg.memory == "none":
        raise ValueError("a model with memory 'none' has no gates")
    betas = np.stack([infini.to_numpy(params[f"h.{l}.beta"]).astype(np.float64) for l in range(cfg.n_layer)])
    return infini.sigmoid(betas)


def classify(g, lo=0.2, hi=0.8):
    """'memory' (g > hi), 'local' (g < lo) or 'mixer', for each gate: an array of str like g."""
    g = np.asarray(g)
    return np.where(g > hi, "memory", np.where(g < lo, "local", "mixer"))


def table(name, g, kinds):
    """Markdown: one row per layer, one column per head, 'g kind'; then the counts."""
    L, H = g.shape
    lines = [f"{name}: sigmoid(beta) per head (memory: g > hi, local: g < lo, else mixer)", "",
             "| layer | " + " | ".join(f"head {h}" for h in range(H)) + " |",
             "|---|" + "---|" * H]
    for l in range(L):
        lines.append(f"| {l} | " + " | ".join(f"{g[l, h]:.2f} {kinds[l, h]}" for h in range(H)) + " |")
    counts = {k: int((kinds == k).sum()) for k in ("memory", "local", "mixer")}
    lines += ["", f"{counts['memory']} memory, {counts['local']} local (specialised), {counts['mixer']} mixer heads"]
    return "\n".join(lines)


def plot(gates, path, lo=0.2, hi=0.8):
    """gates: [(title, g (L,H), kinds (L,H))] -> one heat-map per model, each cell labelled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    L = max(g.shape[0] for _, g, _ in gates)
    H = max(g.shape[1] for _, g, _ in gates)
    fig, axes = plt.subplots(1, len(gates), figsize=(1.0 + 3.0 * len(gates) * max(1, H / 4), 1.2 + 0.6 * L),
                             squeeze=False)
    short = {"memory": "mem", "local": "loc", "mixer": "mix"}
    for ax, (title, g, kinds) in zip(axes[0], gates):
        im = ax.imshow(g, cmap="coolwarm", vmin=0, vmax=1, aspect="auto")
        for l in range(g.shape[0]):
            for h in range(g.shape[1]):
                ax.text(h, l, f"{g[l, h]:.2f}\n{short[kinds[l, h]]}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(g.shape[1]), [str(h) for h in range(g.shape[1])])
        ax.set_yticks(range(g.shape[0]), [str(l) for l in range(g.shape[0])])
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=list(axes[0]), label=f"gate sigmoid(beta); mem > {hi}, loc < {lo}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def main(paths, c):
    if not paths:
        configurator.fail("give one or more checkpoints: python gates.py out-lc-delta/ckpt.npz")
    if not 0 <= c["lo"] <= c["hi"] <= 1:
        configurator.fail(f"--lo and --hi must satisfy 0 <= lo <= hi <= 1, got {c['lo']}, {c['hi']}")
    gates = []
    for path in paths:
        try:
            params, _, meta = checkpoint.load_checkpoint(path)
            cfg = infini.Config(**meta["model"])
            g = gate_values(params, cfg)
        except (checkpoint.CheckpointError, KeyError, ValueError) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 1
        kinds = classify(g, c["lo"], c["hi"])
        title = f"{os.path.basename(os.path.dirname(os.path.abspath(path)))}\n(memory {cfg.memory})"
        print(table(title.replace("\n", " "), g, kinds) + "\n")
        gates.append((title, g, kinds))
    plot(gates, c["out"], c["lo"], c["hi"])
    print(f"wrote {c['out']}")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    paths = [a for a in args if not a.startswith("-") and a.endswith(".npz")]
    rest = [a for a in args if a not in paths]
    sys.exit(main(paths, configurator.apply(dict(DEFAULTS), rest, None, __doc__)))
