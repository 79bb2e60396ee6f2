"""
Tests of the scripts around the model: configurator.py, checkpoint.py, train.py, sample.py.

Tiny models on three short plays prepared into a temporary folder, so the whole file runs
in well under a minute on two CPU cores, writes nothing into the repository and needs no
data prepared beforehand.
"""
import json
import os
import signal
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

import checkpoint
import configurator
import infini
import sample
import train
from speed import parallel

from scripts import ROOT, SUBSET, one_line_error, run, tiny


@pytest.fixture(scope="module")
def trained(char_dir, tmp_path_factory):
    """A tiny model trained for 40 steps: (out_dir, train()'s result)."""
    out = tmp_path_factory.mktemp("out")
    return out, train.train(tiny(char_dir, out))


# -----------------------------------------------------------------------------
# configurator.py

DEFAULTS = {"n": 1, "lr": 0.5, "flag": False, "name": "x"}


def check(c):
    if c["n"] < 1:
        raise ValueError(f"--n must be at least 1, got {c['n']}")


def test_configurator_overrides(tmp_path):
    cfg_file = tmp_path / "preset.py"
    cfg_file.write_text("n = 5\nlr = 2  # an int is fine for a float\nname = 'from file'\n")
    c = configurator.apply(dict(DEFAULTS), [str(cfg_file), "--n=3", "--flag=True", "--name=a b"], check)
    assert c == {"n": 3, "lr": 2.0, "flag": True, "name": "a b"} and type(c["lr"]) is float
    namespace = {**DEFAULTS, "np": np, "_private": 1}  # a module's globals(): only settings change
    configurator.apply(namespace, ["--lr=1e-3"])
    assert namespace["lr"] == 1e-3 and namespace["np"] is np


@pytest.mark.parametrize("argv, words", [
    (["--nope=1"], ["--nope"]),                          # unknown key
    (["--n=1.5"], ["--n", "int"]),                       # wrong type
    (["--n=abc"], ["--n", "int"]),
    (["--flag=1"], ["--flag", "bool"]),                  # bools are True / False
    (["--flag=true"], ["--flag", "bool"]),
    (["--lr=fast"], ["--lr", "float"]),
    (["--n"], ["--n", "value"]),
    (["--n=0"], ["--n", "at least 1"]),                  # impossible value (the script's check)
    (["missing.py"], ["missing.py", "not found"]),
])
def test_configurator_errors_are_one_line(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        configurator.apply(dict(DEFAULTS), argv, check)
    assert e.value.code == 2
    one_line_error(capsys.readouterr().err, *words)


def test_configurator_checks_config_files(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    for text, words in [("nope = 1\n", ["nope"]), ("n = 'two'\n", ["--n", "int"]), ("n = (\n", ["SyntaxError"])]:
        bad.write_text(text)
        with pytest.raises(SystemExit) as e:
            configurator.apply(dict(DEFAULTS), [str(bad)])
        assert e.value.code == 2
        one_line_error(capsys.readouterr().err, *words)


def test_help_prints_the_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        configurator.apply(dict(train.DEFAULTS), ["--help"], train.validate, train.__doc__)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "batch_size = 4" in out and "memory = 'delta'" in out


def test_help_finds_the_comment_of_a_setting_after_a_block(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("try:\n    import x  # not a setting\nexcept ImportError:\n    x = None\n\n"
                      "out_dir = 'out'  # where it goes\n")
    assert configurator.setting_comments(str(script)) == {"out_dir": "where it goes"}


def test_overrides_are_only_what_was_given(tmp_path):
    preset = tmp_path / "preset.py"
    preset.write_text("n = 5\n")
    assert configurator.overrides([str(preset), "--lr=1", "--n=6"], DEFAULTS) == {"n": 6, "lr": 1.0}


@pytest.mark.parametrize("args, words", [
    (["--nope=1"], ["--nope"]),
    (["--batch_size=0"], ["--batch_size"]),
    (["--memory=quadratic"], ["--memory", "quadratic"]),
    (["--learning_rate=-1"], ["--learning_rate"]),
    (["--device=tpu"], ["--device", "tpu"]),
])
def test_train_cli_errors(args, words, tmp_path):
    r = run("train.py", *args, f"--out_dir={tmp_path}")
    assert r.returncode == 2
    one_line_error(r.stderr, *words)


def test_presets():
    # the plain defaults of train.py are config/train_shakespeare_char.py
    preset = configurator.read_config_file(str(ROOT / "config/train_shakespeare_char.py"), train.DEFAULTS)
    assert preset and all(train.DEFAULTS[k] == v for k, v in preset.items()), preset
    gpu = configurator.apply(dict(train.DEFAULTS), [str(ROOT / "config/train_shakespeare_char_gpu.py")],
                             train.validate)
    assert gpu["block_size"] > gpu["segment_len"] and gpu["d_model"] > train.DEFAULTS["d_model"]


# -----------------------------------------------------------------------------
# train.py


def test_training_smoke(trained):
    out, result = trained
    losses = result["losses"]
    assert len(losses) == 40 and np.mean(losses[-5:]) < losses[0] - 0.5, losses
    assert result["eval"]["val"] < 3.6
    for f in ("ckpt.npz", "log.jsonl", "loss.png"):
        assert (out / f).stat().st_size > 0, f
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [0, 10, 20, 30, 40]
    assert set(log[-1]) >= {"step", "train_loss", "val_loss", "lr", "time", "tokens_per_sec", "gate"}
    assert 0 < log[-1]["gate"] < 1
    # a plain .npz of NumPy arrays: it loads without pickle
    with np.load(out / "ckpt.npz", allow_pickle=False) as z:
        assert "param/wte" in z.files and "adam_m/wte" in z.files and "adam_v/h.0.beta" in z.files
    params, opt, meta = checkpoint.load_checkpoint(str(out / "ckpt.npz"))
    assert meta["step"] == 40 and opt["step"] == 40 and meta["model"]["d_model"] == 16
    assert meta["tokenizer"]["kind"] == "char" and len(meta["tokenizer"]["itos"]) == meta["model"]["vocab_size"]
    assert meta["best_val_loss"] == pytest.approx(min(e["val_loss"] for e in log))
    cfg = infini.Config(**meta["model"])
    infini.check_params(params, cfg)


@pytest.fixture(scope="module")
def straight(char_dir, tmp_path_factory):
    """6 steps in one go, evaluating every 3: the reference for the resume tests."""
    out = tmp_path_factory.mktemp("straight")
    result = train.train(tiny(char_dir, out, max_iters=6, eval_interval=3))
    return out, result


def log_losses(out):
    return [(e["step"], e["train_loss"], e["val_loss"])
            for e in map(json.loads, (Path(out) / "log.jsonl").read_text().splitlines())]


def test_beta_init_sets_the_first_gates(char_dir, tmp_path):
    result = train.train(tiny(char_dir, tmp_path / "gates", beta_init=-3.0, max_iters=1, beta_lr_mult=0.0))
    params, cfg, meta = checkpoint.load_model(result["ckpt"])
    assert cfg.beta_init == -3.0 and meta["config"]["beta_init"] == -3.0
    np.testing.assert_allclose(params["h.0.beta"], -3.0)                   # beta_lr_mult 0: the gates stay


def test_eval_interval_0_evaluates_at_the_start_and_end_only(char_dir, straight, tmp_path):
    """Evaluating never moves the training stream: the same model with fewer evaluations."""
    ref_out, ref = straight
    result = train.train(tiny(char_dir, tmp_path, max_iters=6, eval_interval=0))
    assert [step for step, _, _ in log_losses(tmp_path)] == [0, 6]
    assert result["losses"] == ref["losses"] and result["eval"] == ref["eval"]
    params, _, _ = checkpoint.load_checkpoint(result["ckpt"])
    ref_params, _, _ = checkpoint.load_checkpoint(ref["ckpt"])
    assert all(np.array_equal(params[k], ref_params[k]) for k in params)


def test_the_fast_layer_trains_the_plain_layers_model(char_dir, straight, tmp_path, monkeypatch, capsys):
    """--attention=auto is speed/fast.py on the CPU; it trains what --attention=plain trains,
    up to float rounding."""
    _, ref = straight                                                      # auto
    plain = train.train(tiny(char_dir, tmp_path / "plain", max_iters=6, eval_interval=3, attention="plain"))
    assert "plain attention" in capsys.readouterr().out
    assert plain["losses"] == pytest.approx(ref["losses"], rel=1e-5)
    assert plain["eval"] == pytest.approx(ref["eval"], rel=1e-5)
    calls = []
    forward, backward = train.fast.ATTENTION
    monkeypatch.setattr(train.fast, "ATTENTION", (lambda *a: calls.append(1) or forward(*a), backward))
    train.train(tiny(char_dir, tmp_path / "auto", max_iters=1))
    assert calls and "fast attention" in capsys.readouterr().out
    assert train.attention_layer("auto", types.SimpleNamespace())[0] == "plain"  # a GPU's array module


def test_resume_is_exact(char_dir, straight, tmp_path, capsys):
    ref_out, ref = straight
    first = train.train(tiny(char_dir, tmp_path, max_iters=3, eval_interval=3))
    # the other settings come from the checkpoint; the model's always do
    second = train.train({"out_dir": str(tmp_path), "init_from": "resume", "max_iters": 6, "d_model": 32})
    assert "keeping the checkpoint's d_model=16" in capsys.readouterr().out
    assert first["losses"] + second["losses"] == ref["losses"]          # bit for bit
    assert second["eval"] == ref["eval"]
    assert log_losses(tmp_path) == log_losses(ref_out)


def test_ctrl_c_saves_the_last_step_and_resume_is_exact(char_dir, straight, tmp_path, monkeypatch):
    ref_out, ref = straight
    calls = {"n": 0}
    real = parallel.loss_and_grads  # what train.py calls for each step

    def interrupted(*args, **kwargs):  # Ctrl-C arrives in the middle of the 5th step
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(parallel, "loss_and_grads", interrupted)
    first = train.train(tiny(char_dir, tmp_path, max_iters=6, eval_interval=3))
    monkeypatch.setattr(parallel, "loss_and_grads", real)
    assert first["interrupted"] and first["step"] == 5                   # the 5th step was finished
    assert checkpoint.load_checkpoint(first["ckpt"])[2]["step"] == 5
    second = train.train({"out_dir": str(tmp_path), "init_from": "resume"})
    assert first["losses"] + second["losses"] == ref["losses"]
    assert log_losses(tmp_path) == log_losses(ref_out)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(char_dir, tmp_path, monkeypatch, capsys):
    real = parallel.loss_and_grads  # what train.py calls for each step
    calls = {"n": 0}

    def diverging(*args, **kwargs):
        calls["n"] += 1
        loss, grads = real(*args, **kwargs)
        return (float("nan") if calls["n"] == 6 else loss), grads

    monkeypatch.setattr(parallel, "loss_and_grads", diverging)
    config = tiny(char_dir, tmp_path, max_iters=10, eval_interval=4)
    assert train.main(config) == 1
    err = capsys.readouterr().err.replace("\r", "\n")                  # after the progress bar's lines
    one_line_error(err.strip().splitlines()[-1], "nan", "at step 5", "step 4", "ckpt.npz")
    assert checkpoint.load_checkpoint(str(tmp_path / "ckpt.npz"))[2]["step"] == 4
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_resume_without_a_checkpoint(char_dir, tmp_path, capsys):
    assert train.main(tiny(char_dir, tmp_path, init_from="resume")) == 1
    one_line_error(capsys.readouterr().err, "no checkpoint")


def test_missing_data_is_prepared(tmp_path, monkeypatch):
    real = train.load_prepare

    def subset(dataset):  # the real prepare.py, on three plays instead of 38 (for speed)
        module = real(dataset)
        return types.SimpleNamespace(prepare=lambda out_dir, plays=None: module.prepare(out_dir, SUBSET))

    monkeypatch.setattr(train, "load_prepare", subset)
    data = tmp_path / "data"
    result = train.train(tiny(str(data), tmp_path / "out", max_iters=2, eval_interval=2))
    assert result["step"] == 2
    assert sorted(os.listdir(data)) == ["meta.pkl", "train.bin", "val.bin"]


# -----------------------------------------------------------------------------
# checkpoint.py


def tiny_model():
    cfg = infini.Config(vocab_size=11, n_layer=1, n_head=2, d_model=8, segment_len=4)
    params = infini.init_params(cfg)
    return params, infini.adamw_init(params)


def test_checkpoint_round_trip(tmp_path):
    params, opt = tiny_model()
    opt["step"] = 3
    opt["m"]["wte"] += 1.5
    path = str(tmp_path / "ckpt.npz")
    checkpoint.save_checkpoint(path, params, opt, {"step": 3, "note": "hi"})
    p2, o2, meta = checkpoint.load_checkpoint(path)
    assert meta["step"] == 3 and meta["note"] == "hi" and o2["step"] == 3
    for k in params:
        assert np.array_equal(p2[k], params[k]) and p2[k].dtype == params[k].dtype
        assert np.array_equal(o2["m"][k], opt["m"][k]) and np.array_equal(o2["v"][k], opt["v"][k])
    checkpoint.save_checkpoint(path, params, None, {})
    assert checkpoint.load_checkpoint(path)[1] is None


def test_a_crash_while_saving_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    params, opt = tiny_model()
    path = str(tmp_path / "ckpt.npz")
    checkpoint.save_checkpoint(path, params, opt, {"step": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "replace", crash)                 # dies before the rename
    with pytest.raises(checkpoint.CheckpointError, match="disk full; the previous checkpoint is unchanged"):
        checkpoint.save_checkpoint(path, params, opt, {"step": 2})
    monkeypatch.undo()

    real_savez = np.savez

    def half_written(f, **arrays):                                       # dies in the middle of the write
        real_savez(f, **dict(list(arrays.items())[:3]))
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np, "savez", half_written)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(path, params, opt, {"step": 3})
    monkeypatch.undo()
    assert checkpoint.load_checkpoint(path)[2]["step"] == 1
    assert os.listdir(tmp_path) == ["ckpt.npz"]                          # no temporary file left


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    params, opt = tiny_model()
    path = tmp_path / "ckpt.npz"
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        checkpoint.load_checkpoint(str(path))
    checkpoint.save_checkpoint(str(path), params, opt, {"step": 1})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])                              # truncated
    with pytest.raises(checkpoint.CheckpointError, match="not a readable checkpoint") as e:
        checkpoint.load_checkpoint(str(path))
    assert "\n" not in str(e.value)
    np.savez(path, meta=np.array([{"a": 1}], dtype=object))              # a pickle inside: refused
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load_checkpoint(str(path))
    with zipfile.ZipFile(path, "w") as z:                                 # a zip, but not ours
        z.writestr("x.txt", "hello")
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load_checkpoint(str(path))


# -----------------------------------------------------------------------------
# sample.py


def test_sample_cli(trained):
    out, _ = trained
    r = run("sample.py", f"--out_dir={out}", "--start=ROMEO:", "--num_samples=2", "--max_new_tokens=40")
    assert r.returncode == 0, r.stderr
    samples = r.stdout.split("---------------\n")
    assert len(samples) == 3 and samples[0].startswith("ROMEO:") and len(samples[0]) == len("ROMEO:") + 40 + 1


def test_sample_errors(trained, tmp_path):
    out, _ = trained
    r = run("sample.py", f"--out_dir={out}", "--start=hello \u2603")       # a snowman: not in the plays
    assert r.returncode == 2
    one_line_error(r.stderr, "\u2603", "vocabulary")
    r = run("sample.py", f"--out_dir={tmp_path}")
    assert r.returncode == 1                                             # as train.py's for a missing checkpoint
    one_line_error(r.stderr, "no checkpoint", "train.py")


def test_generate_streams_the_prompt_like_a_full_forward(trained):
    out, _ = trained
    params, cfg, tok = sample.load_model(str(out / "ckpt.npz"))
    prompt = tok.encode("First Citizen:\nBefore we proceed any further, hear me speak.\n")  # several segments
    assert len(prompt) > 3 * cfg.segment_len
    new = sample.generate(params, cfg, prompt, 12, temperature=0)
    ids = list(prompt)
    for _ in range(12):  # greedy decoding with whole-sequence forwards
        logits = infini.forward(params, np.array([ids]), cfg)
        ids.append(int(np.argmax(logits[0, -1])))
    assert new == ids[len(prompt):]
    assert sample.generate(params, cfg, prompt, 12, temperature=0, stop=lambda ids: len(ids) == 3) == new[:3]
    rng = np.random.default_rng(0)
    assert len(sample.generate(params, cfg, prompt, 20, temperature=1.0, top_k=5, rng=rng)) == 20


# -----------------------------------------------------------------------------
# the BPE dataset: its tokenizer travels inside the checkpoint


def test_bpe_training_and_sampling(tmp_path):
    data = tmp_path / "shakespeare"
    prep = train.load_prepare("shakespeare")
    prep.prepare(out_dir=str(data), plays=SUBSET, vocab_size=300)
    out = tmp_path / "out"
    result = train.train(tiny(str(data), out, dataset="shakespeare", max_iters=3, eval_interval=3))
    assert result["step"] == 3 and np.isfinite(result["eval"]["val"])
    params, cfg, tok = sample.load_model(str(out / "ckpt.npz"))
    assert tok.kind == "bpe" and cfg.vocab_size == 300
    text = "ROMEO: But, soft! what light through yonder window breaks?\n"
    assert tok.encode(text) == prep.load_encoding(str(data)).encode_ordinary(text)
    assert tok.decode(tok.encode(text)) == text
    for f in os.listdir(data):                                           # the checkpoint needs no data folder
        os.remove(data / f)
    r = run("sample.py", f"--out_dir={out}", "--start=ROMEO:", "--num_samples=1", "--max_new_tokens=10")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ROMEO:")


# -----------------------------------------------------------------------------
# the GPU path, on a strict CuPy stand-in (tests/fakecupy.py): a NumPy array mixed into
# device arithmetic, or a device array saved without infini.to_numpy, fails here too


def test_train_resume_and_sample_on_a_cupy_stand_in(char_dir, tmp_path, monkeypatch):
    import fakecupy
    cpu = train.train(tiny(char_dir, tmp_path / "cpu", max_iters=4, eval_interval=2))
    fake = fakecupy.install(monkeypatch)
    gpu = train.train(tiny(char_dir, tmp_path / "gpu", device="auto", max_iters=2, eval_interval=2))
    gpu2 = train.train(tiny(char_dir, tmp_path / "gpu", device="cuda", max_iters=4, eval_interval=2,
                            init_from="resume"))
    assert gpu["losses"] + gpu2["losses"] == pytest.approx(cpu["losses"], rel=1e-5)
    params, opt, meta = checkpoint.load_checkpoint(gpu2["ckpt"])           # plain NumPy inside
    assert meta["device"] == "cuda" and type(params["wte"]) is np.ndarray and type(opt["m"]["wte"]) is np.ndarray
    params, cfg, tok = sample.load_model(gpu2["ckpt"], device="cuda")
    assert infini.get_array_module(params["wte"]) is fake
    new = sample.generate(params, cfg, tok.encode("ROMEO:\n" * 3), 5, temperature=0.8, top_k=5,
                          rng=np.random.default_rng(0))
    assert len(new) == 5 and all(0 <= i < cfg.vocab_size for i in new)
