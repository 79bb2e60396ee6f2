"""Tests of longctx.py (loss by position in a play, memory footprint) and gates.py (Figure 3),
on tiny random models saved with checkpoint.py: a few seconds in all."""
import os
import pickle
from dataclasses import asdict

import numpy as np
import pytest

import checkpoint
import gates
import infini
import longctx

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


@pytest.mark.parametrize("memory", ["delta", "linear", "none"])
def test_streamed_losses_equal_one_forward(tmp_path, memory):
    params, cfg, meta = checkpoint.load_model(saved(tmp_path, memory))
    assert meta["step"] == 7 and params["wte"].dtype == np.float64
    rng = np.random.default_rng(1)
    plays = [("a", rng.integers(0, V, 30)), ("b", rng.integers(0, V, 21)), ("c", rng.integers(0, V, 30))]
    losses, biggest = longctx.play_losses(params, cfg, plays)  # a and c in one batch, b alone
    for (_, ids), got in zip(plays, losses):
        assert got.shape == (len(ids) - 1,)
        np.testing.assert_allclose(got, direct_losses(params, cfg, ids), rtol=1e-10, atol=1e-10)
    # between calls the state holds the memory and at most N-1 keys and values
    L, H, D, N, C = cfg.n_layer, cfg.n_head, cfg.head_size, cfg.segment_len, cfg.d_model
    mem = L * H * D * (D + 1) if memory != "none" else 0
    assert mem <= biggest <= mem + 2 * L * (N - 1) * C


def test_memory_changes_late_losses(tmp_path):
    """Sanity of the test model: with memory, a token in segment 2 depends on segment 0."""
    params, cfg, _ = checkpoint.load_model(saved(tmp_path, "delta"))
    ids = np.random.default_rng(2).integers(0, V, 30)
    other = ids.copy()
    other[:8] = (other[:8] + 1) % V                                        # change segment 0 only
    a, b = direct_losses(params, cfg, ids), direct_losses(params, cfg, other)
    assert np.abs(a[16:] - b[16:]).max() > 1e-6


def test_chunked_and_sliding_windows(tmp_path):
    params, cfg, _ = checkpoint.load_model(saved(tmp_path, "none"))
    N = cfg.segment_len
    ids = np.random.default_rng(3).integers(0, V, 30)
    # streaming a model without memory = independent chunks of N tokens
    chunked, _ = longctx.stream_losses(params, cfg, ids[None])
    for t0 in range(0, 29, N):
        np.testing.assert_allclose(chunked[0, t0:t0 + N], direct_losses(params, cfg, ids[t0:t0 + N + 1]), atol=1e-10)
    # sliding: token t's loss comes from the window [t1 - N, t1), t1 the end of its stride of N/2
    sliding = longctx.sliding_losses(params, cfg, ids[None])
    stride = N // 2
    for t in range(29):
        t1 = min((t // stride + 1) * stride, 29)
        w0 = max(0, t1 - N)
        assert t - w0 >= min(t, stride)                                    # at least N/2 tokens of context
        want = direct_losses(params, cfg, ids[w0:t1 + 1])[t - w0]
        assert abs(sliding[0, t] - want) < 1e-10
    with pytest.raises(ValueError, match="without memory"):
        longctx.sliding_losses(*checkpoint.load_model(saved(tmp_path, "delta"))[:2], ids[None])


def test_bucket_means():
    losses = [np.arange(10.0), np.arange(5.0)]
    means, counts = longctx.bucket_means(losses, [0, 2, 6, 12, 20])
    assert counts == [4, 7, 4, 0]
    np.testing.assert_allclose(means[:3], [0.5, (2 + 3 + 4 + 5 + 2 + 3 + 4) / 7, 7.5])
    assert np.isnan(means[3])
    x, y = longctx.position_curve(losses, n_bins=4)
    assert len(x) == len(y) and all(a < b for a, b in zip(x, x[1:]))
    assert longctx.bucket_names([0, 256, 1024, 4096]) == ["0-256", "256-1K", "1K-4K"]


@pytest.mark.parametrize("memory", ["delta", "none"])
def test_footprint_formula_equals_measured_state(memory):
    cfg, params = tiny(memory, dtype=np.float32)
    L, H, D, N, C = cfg.n_layer, cfg.n_head, cfg.head_size, cfg.segment_len, cfg.d_model
    fp = longctx.footprint(params, cfg, T=1000)
    mem = L * H * D * (D + 1) if memory != "none" else 0                  # paper, Table 1
    assert fp["memory_formula"] == fp["memory_measured"] == mem
    assert fp["state_formula"] == fp["state_max"] == mem + 2 * L * (N - 1) * C
    assert fp["kv_cache"] == 2 * L * 1000 * C
    assert fp["compression"] == (2 * L * 1000 * C / mem if mem else None)
    # the measured memory is the same after any number of tokens
    state = infini.init_state(params, cfg)
    _, state = infini.forward_stream(params, np.zeros((1, 5 * N), dtype=np.int64), state, cfg)
    assert infini.memory_numbers(state) == mem and infini.state_numbers(state) == mem


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


def test_evaluation_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(4)
    data = tmp_path / "data"
    write_data(data, [("p1", rng.integers(0, V, 50)), ("p2", rng.integers(0, V, 40))])
    plays, _ = longctx.load_val_plays(str(data), eval_len=32)
    assert [len(ids) for _, ids in plays] == [33, 33]
    assert [len(ids) for _, ids in longctx.load_val_plays(str(data), eval_len=0)[0]] == [50, 40]
    paths = {m: saved(tmp_path, m) for m in ("delta", "none")}
    paths["quadratic"] = saved(tmp_path, "none", segment_len=32)
    c = dict(longctx.DEFAULTS, data_dir=str(data), eval_len=32, buckets="0,8,16,64",
             ckpts=",".join(f"{k}={v}" for k, v in paths.items()),
             results=str(tmp_path / "r.json"), plot=str(tmp_path / "loss.png"))
    longctx.validate(c)
    assert longctx.main(c) == 0
    out = capsys.readouterr().out
    for row in ("| delta | ", "| none (chunked 8) |", "| none (sliding 8) |", "| quadratic (chunked 32) |"):
        assert row in out
    assert "0-8 | 8-16 | 16-32 |" in out
    assert "| delta | 2, 2, 8, 8 | 288 | 288 |" in out                     # L*H*D*(D+1) = 2*2*8*9
    import json
    res = json.load(open(tmp_path / "r.json"))
    delta = res["rows"][0]
    direct = np.concatenate([direct_losses(*checkpoint.load_model(paths["delta"])[:2], ids) for _, ids in plays])
    assert abs(delta["loss"] - direct.mean()) < 1e-9
    assert open(tmp_path / "loss.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad, words", [({"buckets": "5,10"}, "start at 0"), ({"models": "delta,gru"}, "--models"),
                                        ({"window": "all"}, "--window"), ({"ckpts": "x"}, "name=path")])
def test_bad_settings(bad, words):
    with pytest.raises(ValueError, match=words):
        longctx.validate(dict(longctx.DEFAULTS, **bad))


def test_train_command_budget():
    c = dict(longctx.DEFAULTS)
    cmds = {n: longctx.train_command(n, c) for n in longctx.KINDS}
    assert "--segment_len=1024" in cmds["quadratic"] and "--memory=none" in cmds["quadratic"]
    assert "--segment_len=128" in cmds["delta"] and "--memory=delta" in cmds["delta"]
    budget = [[a for a in cmd if a.split("=")[0] in ("--block_size", "--batch_size", "--max_iters")]
              for cmd in cmds.values()]
    assert all(b == budget[0] for b in budget)                             # the same budget for all four


def test_gates_classify_and_figure(tmp_path, capsys):
    cfg, params = tiny("delta")
    want = np.array([[0.05, 0.5, 0.95, 0.3], [0.85, 0.15, 0.6, 0.79]])[:, :cfg.n_head]
    for l in range(cfg.n_layer):
        params[f"h.{l}.beta"] = np.log(want[l] / (1 - want[l]))           # sigmoid(beta) = want
    g = gates.gate_values(params, cfg)
    np.testing.assert_allclose(g, want)
    assert gates.classify(g).tolist() == [["local", "mixer"], ["memory", "local"]]
    assert gates.classify([0.1, 0.5, 0.9], lo=0.05, hi=0.95).tolist() == ["mixer"] * 3
    path = str(tmp_path / "m" / "ckpt.npz")
    checkpoint.save_checkpoint(path, params, None, {"model": asdict(cfg)})
    png = str(tmp_path / "gates.png")
    assert gates.main([path], dict(gates.DEFAULTS, out=png)) == 0
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "| 0 | 0.05 local | 0.50 mixer |" in out and "1 memory, 2 local (specialised), 1 mixer heads" in out
    with pytest.raises(ValueError, match="no gates"):
        gates.gate_values(*tiny("none")[::-1])
    # a model without memory on the command line is a one-line error
    assert gates.main([saved(tmp_path, "none")], dict(gates.DEFAULTS, out=png)) == 1


def test_segment_start_loss():
    x = np.arange(20.0)                                                    # N = 8, k = 2: positions 8, 9, 16, 17
    assert longctx.segment_start_loss([x, x[:5]], 8, k=2) == (8 + 9 + 16 + 17) / 4
    assert np.isnan(longctx.segment_start_loss([x[:8]], 8, k=2))
