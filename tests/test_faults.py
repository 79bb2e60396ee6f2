"""
The faults a user meets, as a user meets them: no action loses a trained run, and every bad
input is a one-line error with a non-zero exit status (1: the run failed, a missing or corrupt
checkpoint, a failed save; 2: the command asks for something that cannot be).
"""
import errno
import os
import pickle
import signal
import subprocess
import sys

import numpy as np
import pytest

import checkpoint
import infini
import longctx
import passkey
import sample
import train
from speed import parallel
from scripts import ROOT, one_line_error, run, tiny


def as_args(settings):
    return [f"--{k}={v}" for k, v in settings.items()]


def files(folder):
    """{name: bytes} of every file in folder: what a run must leave exactly as it was."""
    return {f: (folder / f).read_bytes() for f in sorted(os.listdir(folder))}


@pytest.fixture
def finished(char_dir, tmp_path):
    """A trained run in tmp_path/run (40 steps) and its settings."""
    settings = tiny(char_dir, tmp_path / "run")
    train.train(settings)
    return tmp_path / "run", settings


# -----------------------------------------------------------------------------
# a trained run is never replaced by accident


def test_rerun_and_ctrl_c_on_a_trained_run_loses_nothing(finished):
    out, settings = finished
    before = files(out)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "train.py", *as_args({**settings, "max_iters": 100000})], cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stdout:                       # the old code started training: Ctrl-C it there
        if "parameters" in line:
            p.send_signal(signal.SIGINT)
            break
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 2, stdout + stderr
    one_line_error(stderr, "already holds a trained run", "step 40", "--init_from=resume", "--overwrite=True")
    assert files(out) == before                 # checkpoint, log and plot byte for byte


def test_a_run_rejected_late_touches_nothing(finished):
    out, settings = finished
    before = files(out)
    r = run("train.py", *as_args({**settings, "block_size": 5000000, "overwrite": True}))
    assert r.returncode == 2
    one_line_error(r.stderr, "too short", "--block_size=5000000")
    assert files(out) == before                 # even with --overwrite=True: checked before touched


def test_overwrite_true_replaces_the_run(finished):
    out, settings = finished
    r = run("train.py", *as_args({**settings, "max_iters": 10, "overwrite": True}))
    assert r.returncode == 0, r.stderr
    assert checkpoint.load_checkpoint(str(out / "ckpt.npz"))[2]["step"] == 10
    assert [e["step"] for e in train.read_log(str(out / "log.jsonl"))] == [0, 10]   # a new log


def test_passkey_and_longctx_refuse_to_replace_a_run(tmp_path, capsys):
    for folder in (tmp_path / "pk" / "none", tmp_path / "lc-none"):
        folder.mkdir(parents=True)
        (folder / "ckpt.npz").write_bytes(b"a trained run")
    settings = {**passkey.DEFAULTS, "memory": "none", "init_from": "scratch", "out_dir": str(tmp_path / "pk"),
                "device": "cpu", "max_iters": 2, "curriculum_iters": 1, "long_iters": 1, "tune_iters": 0,
                "eval_lengths": "300", "eval_samples": 1}                # were it not refused: a short run
    assert passkey.main(settings) == 2
    one_line_error(capsys.readouterr().err, "already holds a trained run", "--overwrite=True")
    settings = {**longctx.DEFAULTS, "train": True, "models": "none", "out_prefix": str(tmp_path / "lc"),
                "device": "cpu"}
    assert longctx.main(settings) == 2
    one_line_error(capsys.readouterr().err, "already holds a trained run")
    for folder in (tmp_path / "pk" / "none", tmp_path / "lc-none"):
        assert os.listdir(folder) == ["ckpt.npz"] and (folder / "ckpt.npz").read_bytes() == b"a trained run"


def test_stale_temporary_files_are_cleared_on_the_next_start(finished):
    out, settings = finished
    (out / ".tmp-abc123.npz").write_bytes(b"half a checkpoint")          # a save killed before its rename
    train.train({"out_dir": str(out), "init_from": "resume", "max_iters": 42})
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]


# -----------------------------------------------------------------------------
# NaN and inf: never saved, never loaded, caught by the model's input checks


def nan_checkpoint(src, dst, name="h.0.wq"):
    """A copy of checkpoint src with one NaN in param name, written with NumPy directly."""
    with np.load(src) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays[f"param/{name}"][0, 0] = np.nan
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    np.savez(dst, **arrays)


def test_a_nan_checkpoint_is_never_written(tmp_path):
    params = infini.init_params(infini.Config(vocab_size=11, n_layer=1, n_head=2, d_model=8, segment_len=4))
    opt = infini.adamw_init(params)
    params["h.0.w1"][1, 2] = np.inf
    with pytest.raises(checkpoint.CheckpointError, match="h.0.w1 holds NaN or inf"):
        checkpoint.save_checkpoint(str(tmp_path / "ckpt.npz"), params, opt, {})
    params["h.0.w1"][1, 2] = 0.0
    opt["v"]["wte"][0, 0] = np.nan
    with pytest.raises(checkpoint.CheckpointError, match="adam_v/wte holds NaN or inf"):
        checkpoint.save_checkpoint(str(tmp_path / "ckpt.npz"), params, opt, {})
    assert os.listdir(tmp_path) == []


def test_a_nan_checkpoint_is_a_one_line_error(finished, tmp_path):
    out, _ = finished
    bad = tmp_path / "bad"
    nan_checkpoint(str(out / "ckpt.npz"), str(bad / "ckpt.npz"))
    with pytest.raises(checkpoint.CheckpointError, match="h.0.wq holds NaN or inf"):
        checkpoint.load_checkpoint(str(bad / "ckpt.npz"))
    for args in ([], ["--temperature=0", "--max_new_tokens=20"]):
        r = run("sample.py", f"--ckpt={bad / 'ckpt.npz'}", *args)
        assert r.returncode == 1 and r.stdout == ""
        one_line_error(r.stderr, "h.0.wq holds NaN or inf")
    r = run("train.py", f"--out_dir={bad}", "--init_from=resume", "--max_iters=50")
    assert r.returncode == 1
    one_line_error(r.stderr, "h.0.wq holds NaN or inf")


def test_the_model_refuses_nan_parameters():
    cfg = infini.Config(vocab_size=11, n_layer=2, n_head=2, d_model=8, segment_len=4)
    params = infini.init_params(cfg)
    idx = np.arange(10).reshape(1, 10) % 11
    params["h.1.beta"][0] = np.nan
    with pytest.raises(ValueError, match="h.1.beta holds NaN or inf"):
        infini.forward(params, idx, cfg)
    with pytest.raises(ValueError, match="h.1.beta holds NaN or inf"):
        infini.loss_and_grads(params, idx, idx, cfg)
    with pytest.raises(ValueError, match="h.1.beta holds NaN or inf"):
        infini.forward_stream(params, idx[:, :3], infini.init_state(params, cfg), cfg)
    with pytest.raises(ValueError, match="h.1.beta holds NaN or inf"):
        parallel.loss_and_grads(params, np.concatenate([idx, idx]), np.concatenate([idx, idx]), cfg, threads=2)


# -----------------------------------------------------------------------------
# folders that cannot be written: found before any work


@pytest.mark.parametrize("out_dir", ["/dev/null/x", "/proc/x/y"])
def test_an_out_dir_that_cannot_be_made_is_found_first(char_dir, out_dir):
    r = run("train.py", *as_args(tiny(char_dir, out_dir)))
    assert r.returncode == 2
    one_line_error(r.stderr, "cannot write to --out_dir=" + out_dir)
    assert "parameters" not in r.stdout                                  # before the model was even built


def test_a_read_only_out_dir_is_found_before_any_step(char_dir, tmp_path, monkeypatch, capsys):
    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    def no_step(*args, **kwargs):
        raise AssertionError("a training step ran")

    monkeypatch.setattr(checkpoint.tempfile, "TemporaryFile", read_only)  # root ignores permission bits
    monkeypatch.setattr(parallel, "loss_and_grads", no_step)
    monkeypatch.setattr(train, "estimate_loss", no_step)
    assert train.main(tiny(char_dir, tmp_path / "a" / "b")) == 2
    one_line_error(capsys.readouterr().err, "cannot write to --out_dir=", "Read-only file system")
    assert not (tmp_path / "a").exists()                                 # no empty folders left behind


def test_failed_runs_leave_no_empty_folders(char_dir, tmp_path):
    r = run("train.py", *as_args(tiny(char_dir, tmp_path / "new" / "deeper", block_size=5000000)))
    assert r.returncode == 2
    assert not (tmp_path / "new").exists()


def test_a_full_disk_during_a_save_keeps_the_last_checkpoint(char_dir, tmp_path, monkeypatch, capsys):
    real, calls = np.savez, {"n": 0}

    def full_disk(f, **arrays):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, **arrays)

    monkeypatch.setattr(checkpoint.np, "savez", full_disk)
    assert train.main(tiny(char_dir, tmp_path, max_iters=30)) == 1
    one_line_error(capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1],
                   "No space left on device", "the previous checkpoint is unchanged")
    assert checkpoint.load_checkpoint(str(tmp_path / "ckpt.npz"))[2]["step"] == 10
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_an_unwritable_data_folder(char_dir, tmp_path):
    r = run("train.py", *as_args(tiny(char_dir, tmp_path / "out", data_dir="/dev/null/data")))
    assert r.returncode == 2
    one_line_error(r.stderr, "cannot prepare the data in /dev/null/data")


def test_data_dir_of_the_other_dataset(char_dir, tmp_path):
    bpe = tmp_path / "bpe"
    bpe.mkdir()
    for split in ("train", "val"):
        np.arange(500, dtype=np.uint16).tofile(bpe / f"{split}.bin")
    with open(bpe / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": 512, "encoding": "bpe", "tokenizer": {}}, f)
    r = run("train.py", *as_args(tiny(str(bpe), tmp_path / "out", dataset="shakespeare_char")))
    assert r.returncode == 2
    one_line_error(r.stderr, "holds the shakespeare dataset, not shakespeare_char")
    r = run("train.py", *as_args(tiny(char_dir, tmp_path / "out", dataset="shakespeare")))
    assert r.returncode == 2
    one_line_error(r.stderr, "holds the shakespeare_char dataset, not shakespeare")
    assert not (tmp_path / "out").exists()


# -----------------------------------------------------------------------------
# sample.py's inputs


def test_checkpoints_that_do_not_fit_are_one_line_errors(finished, tmp_path):
    out, _ = finished
    params, opt, meta = checkpoint.load_checkpoint(str(out / "ckpt.npz"))
    checkpoint.save_checkpoint(str(tmp_path / "wrong.npz"), params, None,
                               {**meta, "model": {**meta["model"], "d_model": 64}})
    r = run("sample.py", f"--ckpt={tmp_path / 'wrong.npz'}")
    assert r.returncode == 1
    one_line_error(r.stderr, "do not fit", "wte")
    (tmp_path / "random.npz").write_bytes(np.random.default_rng(0).bytes(5000))
    r = run("sample.py", f"--ckpt={tmp_path / 'random.npz'}")
    assert r.returncode == 1 and "allow_pickle" not in r.stderr
    one_line_error(r.stderr, "not a readable checkpoint")


def test_a_tiny_temperature_is_greedy(finished):
    out, _ = finished
    logits = np.array([1.0, 3.0, 2.0, -5.0], dtype=np.float32)
    rng = np.random.default_rng(0)
    assert all(sample.pick_token(logits, 1e-320, 0, rng) == 1 for _ in range(5))
    greedy = run("sample.py", f"--out_dir={out}", "--temperature=0", "--num_samples=1", "--max_new_tokens=30")
    tiny_t = run("sample.py", f"--out_dir={out}", "--temperature=1e-320", "--num_samples=1", "--max_new_tokens=30")
    assert tiny_t.returncode == 0, tiny_t.stderr
    assert tiny_t.stdout == greedy.stdout


def test_a_prompt_file_that_is_not_utf8(finished, tmp_path):
    out, _ = finished
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00abc")
    r = run("sample.py", f"--out_dir={out}", f"--start=FILE:{tmp_path / 'bad.txt'}")
    assert r.returncode == 2
    one_line_error(r.stderr, "bad.txt is not UTF-8")


def test_a_long_prompt_shows_a_progress_bar(finished, capsys):
    out, _ = finished
    params, cfg, tok = sample.load_model(str(out / "ckpt.npz"))
    ids = tok.encode("To be, or not to be: that is the question. " * 20)[:cfg.segment_len * sample.PROGRESS_FROM]
    sample.prefill(params, cfg, ids, infini.init_state(params, cfg))
    assert "reading the prompt" in capsys.readouterr().err
    sample.prefill(params, cfg, ids[:cfg.segment_len * 4], infini.init_state(params, cfg))
    assert "reading the prompt" not in capsys.readouterr().err         # a short prompt: no bar


# -----------------------------------------------------------------------------
# the model's API


def test_bad_arguments_to_the_model_are_value_errors():
    cfg = infini.Config(vocab_size=11, n_layer=1, n_head=2, d_model=8, segment_len=4)
    params = infini.init_params(cfg)
    idx = np.zeros((1, 5), dtype=np.int64)
    with pytest.raises(ValueError, match="params must be a dict"):
        infini.forward(None, idx, cfg)
    with pytest.raises(ValueError, match="cfg must be an infini.Config"):
        infini.forward(params, idx, None)
    with pytest.raises(ValueError, match="param wte must be a NumPy or CuPy array"):
        infini.forward({**params, "wte": params["wte"].tolist()}, idx, cfg)
    with pytest.raises(ValueError, match="param wte has dtype float64"):
        infini.forward({**params, "wte": params["wte"].astype(np.float64)}, idx, cfg)


# -----------------------------------------------------------------------------
# one exit status for one kind of error; friction


def test_cuda_without_cupy_is_exit_2_everywhere(tmp_path):
    try:
        infini.backend("cuda")
        pytest.skip("this machine has a GPU")
    except ValueError:
        pass
    out = f"--out_dir={tmp_path / 'out'}"
    for script, args in [("train.py", [out]), ("sample.py", ["--ckpt=passkey_ckpt/none.npz"]),
                         ("passkey.py", ["--train", "--memory=none", out]),
                         ("longctx.py", ["--train", "--models=none", f"--out_prefix={tmp_path / 'lc'}"])]:
        r = run(script, "--device=cuda", *args)
        assert r.returncode == 2, (script, r.stderr)
        one_line_error(r.stderr, "needs CuPy")
    assert os.listdir(tmp_path) == []                                    # and no folder left behind


def test_the_learning_rate_decays_to_the_end_of_the_run():
    c = {**train.DEFAULTS, "max_iters": 400}
    assert train.get_lr(399, c) == pytest.approx(c["min_lr"], rel=1e-3)
    assert train.get_lr(399, {**c, "lr_decay_iters": 1000}) > 5 * c["min_lr"]   # set by the user: kept


def test_help_says_what_each_setting_does():
    r = run("train.py", "--help")
    assert r.returncode == 0
    lines = {line.split("=")[0].strip(): line for line in r.stdout.splitlines() if line.startswith("  ")}
    assert "evaluate, log and save a checkpoint" in lines["eval_interval"]
    assert all("#" in lines[k] for k in train.DEFAULTS), [k for k in train.DEFAULTS if "#" not in lines[k]]

