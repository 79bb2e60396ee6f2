"""
memory_capacity.py: how many key-value pairs one head's compressive memory gives back.

A head's memory is a D x D matrix M and a D-vector z (SPEC.md). Here k random pairs are
written into an empty memory one at a time, as k key lines far apart in a prompt would be
(Eq. 8 linear, or Eq. 9 delta), and then every key reads the memory (Eq. 7). A read counts
as found when, of the k values stored, its own is the nearest to what came back (cosine).
That is an upper bound for a passkey model, which must also turn the read into digits and
keep it through everything else it writes; it measures the rule, not a trained model.

The keys are sigma(x) with x ~ N(0, key_scale^2) in each of D dimensions: sigma = elu + 1 is
positive everywhere, so two random keys always overlap, and the read, a weighted average
of the stored values (the division by sigma(q) z), blurs them together. A larger key_scale
makes the keys sparser (sigma(x) near 0 for most negative x) and the overlap smaller, as a
trained model can learn to do. Values are N(0, 1).

    python memory_capacity.py                                  # D 16 and 32, k 1..128
    python memory_capacity.py --key_scale=3 --dims=16,32,64
"""
import sys

import numpy as np

import configurator
import infini

# -----------------------------------------------------------------------------
dims = "16,32"             # head sizes D (the passkey model's is 16, train.py's 32)
keys = "1,2,4,8,16,32,64,128"  # numbers of pairs k written before reading
rules = "linear,delta"     # the update rules: "linear" (Eq. 8), "delta" (Eq. 9)
key_scale = 1.0            # the spread of the keys before sigma: larger is sparser
trials = 50                # memories per cell, each with its own random pairs
seed = 0                   # the random pairs
# -----------------------------------------------------------------------------
DEFAULTS = configurator.defaults(globals())


def parse_ints(text, key):
    try:
        values = [int(t) for t in text.split(",")]
    except ValueError:
        raise ValueError(f"--{key} must be a list of whole numbers like 16,32; got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"--{key} must hold numbers of at least 1; got {text!r}")
    return values


def validate(c):
    parse_ints(c["dims"], "dims")
    parse_ints(c["keys"], "keys")
    for rule in c["rules"].split(","):
        if rule not in ("linear", "delta"):
            raise ValueError(f"--rules must name linear and/or delta; got {rule!r}")
    if c["key_scale"] <= 0 or c["trials"] < 1 or c["seed"] < 0:
        raise ValueError("--key_scale must be positive, --trials at least 1 and --seed not negative")


def read_back(sk, v, rule):
    """Write pairs (sk[:, i], v[:, i]) one at a time into an empty memory, then read it with
    every key. sk = sigma(K), v: (B, k, D) float64. -> the reads, (B, k, D)."""
    B, k, D = sk.shape
    M, z = np.zeros((B, 1, D, D)), np.zeros((B, 1, D))
    for i in range(k):
        (M, z), _ = infini.memory_update_forward(sk[:, None, i:i + 1], v[:, None, i:i + 1], M, z, rule)
    out, _ = infini.memory_retrieve_forward(sk[:, None], M, z)
    return out[:, 0]


def found(reads, v):
    """The share of reads whose nearest stored value (cosine) is their own."""
    unit = lambda a: a / (np.linalg.norm(a, axis=-1, keepdims=True) + 1e-12)
    sim = unit(reads) @ unit(v).swapaxes(-1, -2)                           # (B, k, k)
    return float((sim.argmax(axis=-1) == np.arange(v.shape[1])).mean())


def capacity_table(c):
    """{(rule, D): [share found for each k]}, and the k list."""
    ks = parse_ints(c["keys"], "keys")
    table = {}
    for D in parse_ints(c["dims"], "dims"):
        for rule in c["rules"].split(","):
            row = []
            for k in ks:
                rng = np.random.default_rng([c["seed"], D, k])             # the same pairs for both rules
                sk, _ = infini.sigma_forward(rng.standard_normal((c["trials"], k, D)) * c["key_scale"])
                v = rng.standard_normal((c["trials"], k, D))
                row.append(found(read_back(sk, v, rule), v))
            table[(rule, D)] = row
    return table, ks


def main(c):
    table, ks = capacity_table(c)
    print(f"pairs found (% of reads whose own value is the nearest), {c['trials']} memories a cell, "
          f"key_scale {c['key_scale']}")
    print("| rule | D | " + " | ".join(f"k={k}" for k in ks) + " | largest k >= 90% |")
    print("|---|---|" + "---|" * (len(ks) + 1))
    for (rule, D), row in table.items():
        held = max([k for k, a in zip(ks, row) if a >= 0.9], default=0)
        print(f"| {rule} | {D} | " + " | ".join(f"{100 * a:.0f}" for a in row) + f" | {held} |")
    return 0


if __name__ == "__main__":
    config = configurator.apply(dict(DEFAULTS), sys.argv[1:], validate, __doc__)
    sys.exit(main(config))
