"""Lab 6: streaming, the way passkey.py reads a million characters with a fixed state:
_stream_piece's memory read and write (labs/lab6_passkey.md).

Lab 6 builds on the forward passes of labs 2-4: streaming is checked against forward().

    python -m pytest labs/tests/test_lab6.py
"""
import numpy as np
import pytest

import infini
from labcheck import builds_on

EARLIER = [2, 3, 4]


def model(memory, segment_len=4):
    cfg = infini.Config(vocab_size=11, n_layer=2, n_head=2, d_model=8, segment_len=segment_len, memory=memory)
    rng = np.random.default_rng(0)
    params = infini.init_params(cfg, seed=0, dtype=np.float64)
    for name, p in params.items():        # scaled up from the init so that the memory matters
        if name.endswith("beta"):
            params[name] = rng.normal(0.0, 1.0, p.shape)
        elif not name.endswith(("norm1", "norm2", "norm_f")):
            params[name] = rng.normal(0.0, 0.5, p.shape)
    return cfg, params


def stream(params, idx, cfg, chunks):
    state = infini.init_state(params, cfg, batch_size=idx.shape[0])
    outs, i = [], 0
    for n in chunks:
        out, state = infini.forward_stream(params, idx[:, i:i + n], state, cfg)
        outs.append(out)
        i += n
    return np.concatenate(outs, axis=1), state


@pytest.mark.parametrize("memory", ["linear", "delta"])
@builds_on(6, EARLIER)
def test_streaming_equals_forward(memory):
    cfg, params = model(memory)
    idx = np.random.default_rng(3).integers(0, cfg.vocab_size, (2, 23))
    with_memory = infini.forward(params, idx, cfg)
    for chunks in ([1] * 23, [3, 1, 7, 2, 5, 5], [23]):
        got, state = stream(params, idx, cfg, chunks)
        err = np.abs(got - with_memory).max()
        assert err < 1e-10, f"_stream_piece: chunks {chunks} differ from forward() by {err:.1e}"
        assert state["pos"] == 23


@pytest.mark.parametrize("memory", ["linear", "delta"])
@builds_on(6, EARLIER)
def test_memory_is_written_when_a_segment_is_complete(memory):
    cfg, params = model(memory)
    idx = np.random.default_rng(4).integers(0, cfg.vocab_size, (1, 9))
    Ms = []
    for t in (3, 4, 7, 8):                # N = 4: the memory changes after tokens 4 and 8 only
        _, state = stream(params, idx[:, :t], cfg, [t])
        Ms.append(state["M"][0].copy())
    assert np.array_equal(Ms[0], np.zeros_like(Ms[0])), "_stream_piece: M changed before the first segment ended"
    assert np.abs(Ms[1]).max() > 0, "_stream_piece: M is still empty after a whole segment"
    assert np.array_equal(Ms[1], Ms[2]), "_stream_piece: M changed in the middle of a segment"
    assert not np.array_equal(Ms[2], Ms[3]), "_stream_piece: M did not change when the second segment ended"


@builds_on(6, EARLIER)
def test_a_long_input_keeps_a_fixed_state():
    """40 segments streamed in random pieces: the same logits as forward(), and a state of
    L*H*D*(D+1) memory numbers (Table 1) plus the unfinished segment's keys and values."""
    cfg, params = model("delta")
    rng = np.random.default_rng(5)
    T = 40 * cfg.segment_len + 3
    idx = rng.integers(0, cfg.vocab_size, (1, T))
    chunks = []
    while sum(chunks) < T:
        chunks.append(min(int(rng.integers(1, 9)), T - sum(chunks)))
    got, state = stream(params, idx, cfg, chunks)
    err = np.abs(got - infini.forward(params, idx, cfg)).max()
    assert err < 1e-9, f"_stream_piece: {T} streamed tokens differ from forward() by {err:.1e}"
    L, H, D = cfg.n_layer, cfg.n_head, cfg.head_size
    assert infini.memory_numbers(state) == L * H * D * (D + 1)
    assert infini.state_numbers(state) == L * H * D * (D + 1) + 2 * L * H * 3 * D
