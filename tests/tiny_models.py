"""Tiny random models saved as train.py saves them, a held-out data folder like
data/shakespeare_char's, and the losses of one plain forward: what test_heldout.py and
test_longctx.py share."""
import os
import pickle
from dataclasses import asdict

import numpy as np

import checkpoint
import infini

V = 11


def tiny(memory, segment_len=8, dtype=np.float64, seed=0):
    cfg = infini.Config(vocab_size=V, n_layer=2, n_head=2, d_model=16, segment_len=segment_len, memory=memory)
    params = infini.init_params(cfg, seed=seed, dtype=dtype)
    for name in params:  # a random model with larger weights, so that the memory matters
        if name.endswith((".wq", ".wk", ".wv", "wte")):
            params[name] = params[name] * 20
    return cfg, params


def saved(tmp_path, memory, **kw):
    """A tiny model saved as train.py would save it -> path."""
    cfg, params = tiny(memory, **kw)
    path = str(tmp_path / f"{memory}-{cfg.segment_len}" / "ckpt.npz")
    checkpoint.save_checkpoint(path, params, None, {"model": asdict(cfg), "step": 7, "eval": {"val": 2.0}})
    return path


def direct_losses(params, cfg, ids):
    """-log p(next token), straight from one infini.forward over the whole play (T, float64)."""
    logits = infini.forward(params, ids[None, :-1], cfg)[0].astype(np.float64)  # (T,V)
    m = logits.max(axis=-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
    return -logp[np.arange(len(ids) - 1), ids[1:]]


def write_data(folder, plays):
    """A data folder like data/shakespeare_char's: val.bin and meta.pkl with val_docs."""
    os.makedirs(folder, exist_ok=True)
    docs, start = [], 0
    for name, ids in plays:
        docs.append({"name": name, "start": start, "end": start + len(ids)})
        start += len(ids)
    np.concatenate([ids for _, ids in plays]).astype(np.uint16).tofile(os.path.join(folder, "val.bin"))
    with open(os.path.join(folder, "meta.pkl"), "wb") as f:
        pickle.dump({"vocab_size": V, "val_docs": docs}, f)
