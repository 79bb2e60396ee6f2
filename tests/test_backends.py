"""The same code on every backend: NumPy, a strict CuPy stand-in on the CPU (catches
NumPy-only calls that would break on a GPU), and real CuPy when a GPU is present."""

import numpy as np
import pytest

import fakecupy
import infini
from speed import fast
from test_infini import random_params, rel_error


def real_cupy():
    try:
        import cupy
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:
        return None


BACKENDS = ["numpy", "fakecupy"] + (["cupy"] if real_cupy() is not None else [])


@pytest.fixture(params=BACKENDS)
def xp(request, monkeypatch):
    if request.param == "numpy":
        return np
    if request.param == "fakecupy":
        return fakecupy.install(monkeypatch)
    return real_cupy()


def on(xp, tree):
    return {k: xp.asarray(v) for k, v in tree.items()}


def host(a):
    return infini.to_numpy(a)


@pytest.mark.parametrize("memory", ["none", "linear", "delta"])
def test_model_on_every_backend(xp, memory):
    cfg = infini.Config(vocab_size=11, n_layer=2, n_head=2, d_model=8, segment_len=4, memory=memory)
    params = random_params(cfg)
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 11, (2, 10)), rng.integers(0, 11, (2, 10))
    targets[0, 2] = -1
    ref_logits = infini.forward(params, idx, cfg)
    ref_loss, ref_grads = infini.loss_and_grads(params, idx, targets, cfg)

    p, d_idx, d_tg = on(xp, params), xp.asarray(idx), xp.asarray(targets)
    logits = infini.forward(p, d_idx, cfg)
    assert infini.get_array_module(logits) is xp
    assert np.abs(host(logits) - ref_logits).max() <= 1e-10
    for attention in (infini.PLAIN_ATTENTION, fast.ATTENTION):
        loss, grads = infini.loss_and_grads(p, d_idx, d_tg, cfg, attention=attention)
        assert abs(loss - ref_loss) <= 1e-10
        for name in ref_grads:
            assert infini.get_array_module(grads[name]) is xp
            assert rel_error(host(grads[name]), ref_grads[name]) <= 1e-9, name

    state = infini.init_state(p, cfg, batch_size=2)
    outs = []
    for t0, t1 in [(0, 3), (3, 4), (4, 10)]:
        out, state = infini.forward_stream(p, d_idx[:, t0:t1], state, cfg)
        outs.append(host(out))
    assert np.abs(np.concatenate(outs, axis=1) - ref_logits).max() <= 1e-10

    opt = infini.adamw_init(p)
    norm = infini.clip_grad_norm(grads, 1.0)
    infini.adamw_step(p, grads, opt, lr=1e-2, beta_lr_mult=10.0)
    ref_opt = infini.adamw_init(params)
    assert abs(norm - infini.clip_grad_norm(ref_grads, 1.0)) <= 1e-9
    infini.adamw_step(params, ref_grads, ref_opt, lr=1e-2, beta_lr_mult=10.0)
    for name in params:
        assert np.abs(host(p[name]) - params[name]).max() <= 1e-12, name


def test_fake_cupy_catches_numpy_only_code(monkeypatch):
    """The stand-in is strict: the mistakes it exists to catch do raise."""
    fake = fakecupy.install(monkeypatch)
    x = fake.asarray(np.ones((2, 3)))
    with pytest.raises(fakecupy.MixedArraysError):
        x + np.ones(3)                       # host array in a device expression
    with pytest.raises(fakecupy.MixedArraysError):
        np.exp(x) + np.arange(3)             # a NumPy-made array meeting a device one
    with pytest.raises(fakecupy.MixedArraysError):
        x[np.array([0, 1])]                  # host index array
    assert infini.get_array_module(x) is fake
    assert isinstance(x * 2.0 + fake.zeros(3), fakecupy.DeviceArray)
    assert np.array_equal(infini.to_numpy(x), np.ones((2, 3)))


def test_passkey_training_and_streaming_on_every_backend(xp):
    """passkey.py's weighted loss with the key penalty, and its streamed generation, on device arrays."""
    import passkey_eval
    import passkey_memory
    import passkey_task
    cfg = infini.Config(vocab_size=passkey_task.VOCAB_SIZE, n_layer=2, n_head=2, d_model=8, segment_len=16,
                        memory="delta")
    params = infini.init_params(cfg, seed=0, dtype=np.float64)
    params["h.1.beta"][1] = passkey_memory.CLOSED_GATE                     # a closed head, left out of
    idx, targets, weights = passkey_task.make_batch(np.random.default_rng(0), 2, 1, 1.0, 0.1)
    att = passkey_memory.memory_penalty(0.5, 0.01, 0.3, 0.02)              #   the penalties

    def step(params, idx, targets, weights):                               # passkey.py's training step
        loss, grads, logits = infini.loss_and_grads(params, idx, targets, cfg, att, weights=weights,
                                                    return_logits=True)
        pred = infini.to_numpy(logits.argmax(axis=-1))
        return loss, grads, passkey_task.answer_accuracy(pred, infini.to_numpy(targets), infini.to_numpy(weights))
    ref_loss, ref_grads, ref_acc = step(params, idx, targets, weights)
    p = on(xp, params)
    loss, grads, acc = step(p, xp.asarray(idx), xp.asarray(targets), xp.asarray(weights))
    assert abs(loss - ref_loss) <= 1e-10 and acc == ref_acc
    for name in ref_grads:
        assert infini.get_array_module(grads[name]) is xp
        assert rel_error(host(grads[name]), ref_grads[name]) <= 1e-9, name
    specs = [(3, 1, 12345), (0, 4, 54321)]
    want = passkey_eval.generate_batch(params, cfg, [passkey_task.make_prompt_parts(*s) for s in specs], chunk=40)
    assert passkey_eval.generate_batch(p, cfg, [passkey_task.prompt_pieces(*s) for s in specs], chunk=40) == want
