"""Tests of longctx.py (loss by position in a play, memory footprint) and gates.py (Figure 3),
on tiny random models saved with checkpoint.py: a few seconds in all."""
from dataclasses import asdict

import numpy as np
import pytest

import checkpoint
import gates
import heldout
import infini
import longctx
from tiny_models import V, direct_losses, saved, tiny, write_data


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


def test_bucket_names():
    assert longctx.bucket_names([0, 256, 1024, 4096]) == ["0-256", "256-1K", "1K-4K"]


def test_evaluation_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(4)
    data = tmp_path / "data"
    write_data(data, [("p1", rng.integers(0, V, 50)), ("p2", rng.integers(0, V, 40))])
    plays, _ = heldout.load_val_plays(str(data), eval_len=32)
    assert [len(ids) for _, ids in plays] == [33, 33]
    assert [len(ids) for _, ids in heldout.load_val_plays(str(data), eval_len=0)[0]] == [50, 40]
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


