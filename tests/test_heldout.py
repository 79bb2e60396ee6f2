"""Tests of heldout.py: per-token losses on held-out plays read as a stream, in chunks or
in sliding windows, and the tables made of them; tiny random models, a few seconds."""
import numpy as np
import pytest

import checkpoint
import heldout
from tiny_models import V, direct_losses, saved


@pytest.mark.parametrize("memory", ["delta", "linear", "none"])
def test_streamed_losses_equal_one_forward(tmp_path, memory):
    params, cfg, meta = checkpoint.load_model(saved(tmp_path, memory))
    assert meta["step"] == 7 and params["wte"].dtype == np.float64
    rng = np.random.default_rng(1)
    plays = [("a", rng.integers(0, V, 30)), ("b", rng.integers(0, V, 21)), ("c", rng.integers(0, V, 30))]
    losses, biggest = heldout.play_losses(params, cfg, plays)  # a and c in one batch, b alone
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
    chunked, _ = heldout.stream_losses(params, cfg, ids[None])
    for t0 in range(0, 29, N):
        np.testing.assert_allclose(chunked[0, t0:t0 + N], direct_losses(params, cfg, ids[t0:t0 + N + 1]), atol=1e-10)
    # sliding: token t's loss comes from the window [t1 - N, t1), t1 the end of its stride of N/2
    sliding = heldout.sliding_losses(params, cfg, ids[None])
    stride = N // 2
    for t in range(29):
        t1 = min((t // stride + 1) * stride, 29)
        w0 = max(0, t1 - N)
        assert t - w0 >= min(t, stride)                                    # at least N/2 tokens of context
        want = direct_losses(params, cfg, ids[w0:t1 + 1])[t - w0]
        assert abs(sliding[0, t] - want) < 1e-10
    with pytest.raises(ValueError, match="without memory"):
        heldout.sliding_losses(*checkpoint.load_model(saved(tmp_path, "delta"))[:2], ids[None])


def test_bucket_means():
    losses = [np.arange(10.0), np.arange(5.0)]
    means, counts = heldout.bucket_means(losses, [0, 2, 6, 12, 20])
    assert counts == [4, 7, 4, 0]
    np.testing.assert_allclose(means[:3], [0.5, (2 + 3 + 4 + 5 + 2 + 3 + 4) / 7, 7.5])
    assert np.isnan(means[3])
    x, y = heldout.position_curve(losses, n_bins=4)
    assert len(x) == len(y) and all(a < b for a, b in zip(x, x[1:]))


def test_segment_start_loss():
    x = np.arange(20.0)                                                    # N = 8, k = 2: positions 8, 9, 16, 17
    assert heldout.segment_start_loss([x, x[:5]], 8, k=2) == (8 + 9 + 16 + 17) / 4
    assert np.isnan(heldout.segment_start_loss([x[:8]], 8, k=2))


def test_in_segment_means_skip_the_first_segment():
    x = np.arange(24.0)                                                    # N = 8: segments 8-15, 16-23
    got = heldout.in_segment_means([x, x[:12]], 8, [0, 2, 8])
    assert got == [(8 + 9 + 16 + 17 + 8 + 9) / 6, (sum(range(10, 16)) + sum(range(18, 24)) + 10 + 11) / 14]
    assert np.isnan(heldout.in_segment_means([x[:8]], 8, [0, 8])[0])


def test_speaker_name_masks():
    text = "HAMLET:\nTo be.\n\nHORATIO:\nMy lord: here.\n"
    itos = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(itos)}
    ids = np.array([stoi[ch] for ch in text])
    (mask,) = heldout.speaker_name_masks([("p", ids)], itos)
    assert mask.shape == (len(text) - 1,)
    predicted = "".join(ch for ch, m in zip(text[1:], mask) if m)          # position t predicts text[t+1]
    assert predicted == "AMLET:\nHORATIO:\n"                               # not "My lord:", inside a speech


def test_play_losses_rejects_an_unknown_mode(tmp_path):
    params, cfg, _ = checkpoint.load_model(saved(tmp_path, "delta"))
    with pytest.raises(ValueError, match="mode"):
        heldout.play_losses(params, cfg, [("a", np.zeros(5, dtype=np.int64))], mode="window")


@pytest.mark.parametrize("memory", ["delta", "none"])
def test_chunked_reads_every_segment_alone(tmp_path, memory):
    params, cfg, _ = checkpoint.load_model(saved(tmp_path, memory))
    N = cfg.segment_len
    ids = np.random.default_rng(5).integers(0, V, 30)
    chunked = heldout.chunked_losses(params, cfg, ids[None])
    for t0 in range(0, 29, N):
        np.testing.assert_allclose(chunked[0, t0:t0 + N], direct_losses(params, cfg, ids[t0:t0 + N + 1]), atol=1e-10)
    stream, _ = heldout.stream_losses(params, cfg, ids[None])
    if memory == "none":                          # without memory, streaming restarts every segment anyway
        np.testing.assert_allclose(chunked, stream, atol=1e-10)
    else:                                         # with it, later segments differ: the memory is empty
        np.testing.assert_allclose(chunked[0, :N], stream[0, :N], atol=1e-10)
        assert np.abs(chunked[0, N:] - stream[0, N:]).max() > 1e-6
