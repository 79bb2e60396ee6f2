"""
What the script tests share: running a script as a person would, checking that an error is
one line, and a tiny model's settings for train.py on three plays (prepared by the char_dir
fixture in conftest.py).
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBSET = ["the-comedy-of-errors", "macbeth", "the-tempest"]  # the-tempest becomes the val split

TINY = dict(n_layer=1, n_head=2, d_model=16, segment_len=8, block_size=32, batch_size=4, eval_iters=2,
            eval_interval=10, log_interval=1, learning_rate=1e-2, min_lr=1e-3, warmup_iters=2,
            lr_decay_iters=40, max_iters=40, device="cpu", seed=7)


def run(script, *args, timeout=120):
    """Run a script as a person would; -> CompletedProcess with text stdout and stderr."""
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(stderr, *words):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert "Traceback" not in stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def tiny(char_dir, out_dir, **overrides):
    """train.py settings of a tiny model on the char_dir data, writing to out_dir."""
    return {**TINY, "data_dir": char_dir, "out_dir": str(out_dir), **overrides}
