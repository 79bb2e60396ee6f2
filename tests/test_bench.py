"""bench.py: its commands run (on the tiny config, in a second) and a missing PyTorch is a
one-line error that says what to install."""
import sys

import bench
from scripts import ROOT


def test_training_and_streaming_run(monkeypatch, capsys):
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: None)         # the pauses between turns
    assert bench.main(["--config=tiny", "--modes=delta", "--warmup=0", "--repeats=1", "--malloc=default"]) == 0
    assert bench.main(["--config=tiny", "--stream", "--stream_tokens=4096", "--malloc=default"]) == 0
    out = capsys.readouterr().out
    assert "tok/s" in out and "and fast layer" in out and "peak host memory" in out


def test_compare_without_torch_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)                        # import torch -> ImportError
    assert bench.main(["--config=tiny", "--compare=torch"]) == 2
    assert "pip install -r requirements-compare.txt" in capsys.readouterr().err
    assert "torch" in (ROOT / "requirements-compare.txt").read_text().split()


def test_checks_measures_the_cost_of_the_nan_check(monkeypatch, capsys):
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: None)
    assert bench.main(["--config=tiny", "--checks", "--warmup=0", "--repeats=2", "--malloc=default"]) == 0
    out = capsys.readouterr().out
    assert "the check costs" in out and "%" in out
