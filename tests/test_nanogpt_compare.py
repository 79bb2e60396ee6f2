"""Tests of nanogpt_compare.py: its commands, its checks, and a tiny end-to-end run of ours
and none (nanoGPT itself needs PyTorch and a clone; its scoring is tested when both are here)."""
import os
import pickle

import numpy as np
import pytest

import heldout
import nanogpt_compare as cmp
from scripts import TINY, one_line_error, run


def settings(**kw):
    return dict(cmp.DEFAULTS, **kw)


def test_commands_keep_the_recipe_and_the_seed(tmp_path):
    c = settings(nanogpt=str(tmp_path), out_prefix=str(tmp_path / "cmp"), ours="--max_iters=5 --lr_decay_iters=5")
    argv, cwd = cmp.command(c, "nanogpt", 1338)
    assert cwd == str(tmp_path) and argv[1] == "-c" and "s + 1" in argv[2]      # seed 1338 = nanoGPT's + 1
    for flag in ("--block_size=64", "--batch_size=12", "--n_layer=4", "--n_embd=128", "--dropout=0.0",
                 "--compile=False", "--max_iters=4800", "--lr_decay_iters=4800"):
        assert flag in argv
    assert f"--dataset={cmp.DATA_DIR}" in argv
    assert "s + 0" in cmp.command(c, "nanogpt", 1337)[0][2]                     # 1337: nanoGPT as shipped
    ours, _ = cmp.command(c, "ours", 7)
    none, _ = cmp.command(c, "none", 7)
    assert "--seed=7" in ours and "--max_iters=5" in ours and "--memory=none" not in ours
    assert none == [a.replace("-ours-", "-none-") for a in ours] + ["--memory=none", "--max_iters=3000"]
    assert cmp.command(dict(c, none_iters=0), "none", 7)[0][-1] == "--memory=none"


@pytest.mark.parametrize("bad, words", [
    ({"runs": "ours,gpt"}, "--runs"), ({"seeds": "a"}, "--seeds"), ({"nanogpt_iters": 0}, "--nanogpt_iters"),
    ({"nanogpt": ""}, "--nanogpt=PATH"), ({"nanogpt": "."}, "is it a nanoGPT clone"), ({"ours": "'x", "runs": "ours"}, "--ours")])
def test_bad_settings(bad, words):
    with pytest.raises(ValueError, match=words):
        cmp.validate(settings(**bad))


def test_bad_setting_on_the_command_line_is_one_line():
    r = run("nanogpt_compare.py", "--runs=ours,gpt")
    assert r.returncode == 2
    one_line_error(r.stderr, "--runs")


def test_ours_and_none_end_to_end(char_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cmp, "DATA_DIR", char_dir)
    tiny = " ".join(f"--{k}={v}" for k, v in {**TINY, "max_iters": 6}.items()
                    if k not in ("device", "seed"))
    c = settings(runs="ours,none", seeds="3", none_iters=0, out_prefix=str(tmp_path / "cmp"), eval_len=200,
                 ours=f"--data_dir={char_dir} {tiny}", results=str(tmp_path / "r.json"))
    cmp.validate(c)
    assert cmp.main(c) == 0
    out = capsys.readouterr().out
    for r in ("| ours | 3 | 6 |", "| ours, memory emptied | 3 | 6 |", "| none | 3 | 6 |", "| none, chunked | 3 | 6 |"):
        assert r in out
    assert "stream 8 |" in out and "sliding 8 |" in out and "chunked 8 |" in out
    # the table's loss is the mean of heldout's per-character losses
    import checkpoint
    plays, meta = heldout.load_val_plays(char_dir, 200)
    params, cfg, _ = checkpoint.load_model(cmp.ckpt_path(c, "ours", 3))
    losses, _ = heldout.play_losses(params, cfg, plays, "stream")
    import json
    rows = json.load(open(tmp_path / "r.json"))["rows"]
    assert abs(rows[0]["loss"] - np.concatenate(losses).mean()) < 1e-9 and rows[0]["seconds"] > 0
    # a second run refuses to replace the first one's checkpoints, before training anything
    assert cmp.main(c) == 2
    assert "already holds a trained run" in capsys.readouterr().err
    # --train=False scores what is there
    assert cmp.main(dict(c, train=False)) == 0


def test_nanogpt_scoring(char_dir, tmp_path):
    """Sliding windows through nanoGPT's own model: each loss equals one forward over its window."""
    torch = pytest.importorskip("torch")
    root = os.environ.get("NANOGPT", os.path.join(os.path.dirname(cmp.ROOT), "nanoGPT"))
    if not os.path.isfile(os.path.join(root, "model.py")):
        pytest.skip("no nanoGPT clone (set NANOGPT=path)")
    import sys
    sys.path.insert(0, root)
    from model import GPT, GPTConfig
    with open(os.path.join(char_dir, "meta.pkl"), "rb") as f:
        V = pickle.load(f)["vocab_size"]
    args = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, bias=False, vocab_size=V, dropout=0.0)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**args))
    path = str(tmp_path / "ckpt.pt")
    torch.save({"model": model.state_dict(), "model_args": args, "iter_num": 5}, path)
    plays, _ = heldout.load_val_plays(char_dir, 30)
    losses, N, step = cmp.nanogpt_losses(path, root, plays)
    assert N == 8 and step == 5 and losses[0].shape == (30,)
    ids = plays[0][1]
    for t in (0, 5, 13, 29):                                                  # window [t1 - 8, t1), stride 4
        t1 = min((t // 4 + 1) * 4, 30)
        w0 = max(0, t1 - 8)
        x = torch.from_numpy(ids[w0:t1][None])
        logits, _ = model(x, x)
        want = -torch.log_softmax(logits[0, t - w0].double(), -1)[ids[t + 1]].item()
        assert abs(losses[0][t] - want) < 1e-5
