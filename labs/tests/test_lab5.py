"""Lab 5: training the gates: adamw_step's learning rate for beta and its weight decay
(labs/lab5_training_gates.md). The last check trains a tiny model: it builds on labs 1-4.

    python -m pytest labs/tests/test_lab5.py
"""
import numpy as np

import infini
from labcheck import builds_on, check_close


def tiny_params():
    cfg = infini.Config(vocab_size=11, n_layer=2, n_head=2, d_model=8, segment_len=4, memory="delta")
    return cfg, infini.init_params(cfg, seed=0, dtype=np.float64)


def test_weight_decay_only_on_matrices():
    cfg, params = tiny_params()
    before = {k: p.copy() for k, p in params.items()}
    zero = {k: np.zeros_like(p) for k, p in params.items()}
    opt = infini.adamw_init(params)
    infini.adamw_step(params, zero, opt, lr=0.1, weight_decay=0.5, beta_lr_mult=10.0)   # decay only
    for name in params:
        if params[name].ndim >= 2:
            check_close("adamw_step", f"{name} after one step with zero gradients (want p * (1 - lr * wd))",
                        params[name], before[name] * (1 - 0.1 * 0.5), tol=1e-12)
        else:
            assert np.array_equal(params[name], before[name]), \
                f"adamw_step: {name} changed with a zero gradient: no weight decay on norms and gates"


def test_beta_learning_rate_multiplier():
    cfg, params = tiny_params()
    before = {k: p.copy() for k, p in params.items()}
    ones = {k: np.ones_like(p) for k, p in params.items()}
    opt = infini.adamw_init(params)
    infini.adamw_step(params, ones, opt, lr=0.01, weight_decay=0.0, beta_lr_mult=10.0)
    # Adam's first step moves every entry by about lr (m / sqrt(v) = 1 after bias correction)
    for name in params:
        want = 0.1 if name.endswith(".beta") else 0.01
        check_close("adamw_step", f"the step of {name} with gradient 1 (want lr{' * beta_lr_mult' if want == 0.1 else ''})",
                    before[name] - params[name], np.full(params[name].shape, want), tol=1e-5)


def test_beta_lr_mult_does_not_touch_other_parameters():
    cfg, p1 = tiny_params()
    _, p2 = tiny_params()
    rng = np.random.default_rng(1)
    grads = {k: rng.normal(size=p.shape) for k, p in p1.items()}
    o1, o2 = infini.adamw_init(p1), infini.adamw_init(p2)
    for _ in range(3):
        infini.adamw_step(p1, grads, o1, lr=0.01, weight_decay=0.1, beta_lr_mult=1.0)
        infini.adamw_step(p2, grads, o2, lr=0.01, weight_decay=0.1, beta_lr_mult=7.0)
    for name in p1:
        if not name.endswith(".beta"):
            assert np.array_equal(p1[name], p2[name]), f"adamw_step: beta_lr_mult changed {name}, not a gate"
    moved1, moved2 = np.abs(p1["h.0.beta"]).max(), np.abs(p2["h.0.beta"]).max()
    assert abs(moved2 / moved1 - 7.0) < 1e-6, f"adamw_step: beta moved {moved2 / moved1:.3f}x as far, want 7x"


@builds_on(5, [1, 2, 3, 4])
def test_gates_move_faster_with_the_multiplier():
    """A tiny training run (the experiment of the handout in miniature)."""
    cfg = infini.Config(vocab_size=16, n_layer=2, n_head=2, d_model=16, segment_len=8, memory="delta")
    rng = np.random.default_rng(0)
    data = (rng.integers(0, 16, (4, 1)) + np.arange(25)[None, :]) % 16     # counting sequences
    moved = {}
    for mult in (1.0, 10.0):
        params = infini.init_params(cfg, seed=0)
        opt = infini.adamw_init(params)
        for _ in range(8):
            loss, grads = infini.loss_and_grads(params, data[:, :-1], data[:, 1:], cfg)
            infini.clip_grad_norm(grads, 1.0)
            infini.adamw_step(params, grads, opt, lr=1e-2, weight_decay=0.1, beta_lr_mult=mult)
        moved[mult] = max(float(np.abs(params[f"h.{l}.beta"]).max()) for l in range(cfg.n_layer))
    assert moved[10.0] > 3 * moved[1.0], \
        f"adamw_step: gate logits moved {moved[10.0]:.3f} with beta_lr_mult=10 and {moved[1.0]:.3f} with 1"
