"""
Tests of the passkey test: the task (passkey_task.py: the prompt's exact text, key depth and
length, the scorer, the training batch), the streamed evaluation (passkey_eval.py), the
memory penalties and far memory (passkey_memory.py), the recipe (config/passkey.py) and tiny
end-to-end runs of passkey.py (in-process and as a script). The fast ones take a few seconds;
the full demo is marked slow.
"""
import functools
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import configurator
import infini
import passkey as pk
import passkey_eval as ev
import passkey_memory as pm
import passkey_task as task
import scripts

ROOT = Path(__file__).resolve().parent.parent
F = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
INTRO = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
         "I will quiz you about the important information there.")
TINY = ["--n_layer=1", "--n_head=2", "--d_model=16", "--segment_len=16",
        "--max_iters=2", "--tune_iters=2", "--batch_size=2", "--n_start=0", "--n_end=1", "--long_iters=0",
        "--shift_max=3", "--eval_samples=1", "--eval_depths=0.5"]


# -----------------------------------------------------------------------------
# the prompt


def test_template_is_exact():
    text = task.make_prompt_parts(2, 1, 9054)
    assert text == (INTRO + "\n" + F + " " + F + "\n"
                    "The pass key is 9054. Remember it. 9054 is the pass key.\n" + F + "\n"
                    "What is the pass key? The pass key is")
    # no filler on one side: that line is left out, with its newline
    assert task.make_prompt_parts(0, 0, 7) == (INTRO + "\nThe pass key is 7. Remember it. 7 is the pass key.\n"
                                             "What is the pass key? The pass key is")
    assert all(ch in task.STOI for ch in text)


@pytest.mark.parametrize("key", [1, 9054, 50000])
@pytest.mark.parametrize("length", [300, 1000, 4321, 100_000])
def test_length_is_the_closest_without_exceeding(length, key):
    prompt, answer = task.make_prompt(length, 0.5, key)
    assert answer == f" {key}."
    assert len(prompt) <= length < len(prompt) + len(F) + 1    # one more repeat would not fit
    n = prompt.count(F)
    assert len(prompt) == len(task.make_prompt_parts(0, 0, key)) + n * (len(F) + 1)


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_key_sits_at_the_asked_depth(depth):
    prompt, _ = task.make_prompt(5000, depth, 123)
    lines = prompt.split("\n")
    n = prompt.count(F)
    x = lines[1].count(F) if lines[1].startswith(F) else 0
    assert x == round(depth * n)
    assert lines[0] == INTRO and lines[-1] == "What is the pass key? The pass key is"
    assert "The pass key is 123. Remember it. 123 is the pass key." in lines
    if depth == 0:
        assert lines[1].startswith("The pass key is 123.")
    if depth == 1:
        assert lines[-2].startswith("The pass key is 123.")
    # the prompts of every depth have the same length: they can be streamed together
    assert len(prompt) == len(task.make_prompt(5000, 0.0, 999)[0])


def test_prompt_errors():
    with pytest.raises(ValueError, match="key"):
        task.make_prompt(1000, 0.5, 0)
    with pytest.raises(ValueError, match="key"):
        task.make_prompt(1000, 0.5, 50001)
    with pytest.raises(ValueError, match="depth"):
        task.make_prompt(1000, 1.5, 5)
    with pytest.raises(ValueError, match="at least"):
        task.make_prompt(100, 0.5, 5)


def test_training_keys_are_in_range_and_the_loss_sits_on_the_answer():
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx, targets, weights = task.make_batch(rng, 4, 3, 1.0, 0.0)
        for b in range(4):
            text = task.decode(idx[b][targets[b] != -1]) + task.decode(targets[b][targets[b] != -1][-1:])
            key = int(text.split("The pass key is ")[1].split(".")[0])
            assert task.KEY_MIN <= key <= task.KEY_MAX
            assert text.endswith(f"What is the pass key? The pass key is {key}.")
            # weighted targets: the key's second occurrence (after ". Remember it. ") with the space
            # that ends it, and the answer
            assert task.decode(targets[b][weights[b] > 0]) == f"{key}  {key}."


def test_shifted_training_prompts_start_after_newlines_that_carry_no_loss():
    idx, targets, weights = task.make_batch(np.random.default_rng(6), 8, 2, 1.0, 0.02, shift_max=40)
    shifts = []
    for b in range(len(idx)):
        text = task.decode(idx[b])
        s = len(text) - len(text.lstrip("\n"))
        shifts.append(s)
        assert text[s:].startswith(task.INTRO)                               # the template, after s newlines
        assert (weights[b, :s] == 0).all() and (weights[b, s:] > 0).any()
        key = text.split("The pass key is ")[1].split(".")[0]
        assert task.decode(targets[b][task.answer_mask(targets, weights)[b]]) == f" {key}."
    assert 0 <= min(shifts) < max(shifts) <= 40                           # shifts differ, within the bound


def batch_keys_and_depths(idx):
    """(key, filler repeats in all, filler repeats after the key line) of each prompt of a make_batch batch."""
    out = []
    for row in idx:
        text = task.decode(row)
        after = text.split(" is the pass key.")[1].split("What is the pass key?")[0]
        key = int(text.split("The pass key is ")[1].split(".")[0])
        out.append((key, text.count(task.FILLER), after.count(task.FILLER)))
    return out


def test_short_keys_and_key_last_set_the_fractions_of_4_digit_keys_and_last_key_lines():
    rng = np.random.default_rng(7)
    plain = [kd for _ in range(100) for kd in batch_keys_and_depths(task.make_batch(rng, 16, 3, 1.0, 0.0)[0])]
    mixed = [kd for _ in range(100) for kd in batch_keys_and_depths(task.make_batch(rng, 16, 3, 1.0, 0.0, 0,
                                                                                  0.5, 0.25)[0])]
    four = lambda kds: np.mean([1000 <= k <= 9999 for k, _, _ in kds])
    last = lambda kds: np.mean([y == 0 for _, n, y in kds if n == 3])   # prompts of 3 repeats: depth x/3
    assert 0.15 < four(plain) < 0.21 and 0.56 < four(mixed) < 0.62       # 0.18; 0.5 + 0.5 * 0.18 = 0.59
    assert 0.17 < last(plain) < 0.33 and 0.36 < last(mixed) < 0.52       # 1/4; 0.25 + 0.75 / 4 = 0.44


# -----------------------------------------------------------------------------
# the scorer


def test_answer_mask_is_the_answer():
    idx, targets, weights = task.make_batch(np.random.default_rng(4), 6, 4, 1.0, 0.02)
    mask = task.answer_mask(targets, weights)
    for b in range(len(idx)):
        key = task.decode(idx[b]).split("The pass key is ")[1].split(".")[0]
        assert task.decode(targets[b][mask[b]]) == f" {key}."            # the answer, not the key line's copy
        assert np.flatnonzero(mask[b])[-1] == (targets[b] >= 0).sum() - 1  # ending at the row's last target


@pytest.mark.parametrize("memory", ["none", "delta"])
def test_streamed_predictions_equal_the_whole_forward(memory):
    cfg = infini.Config(vocab_size=task.VOCAB_SIZE, n_layer=2, n_head=2, d_model=16, segment_len=16, memory=memory)
    params = infini.init_params(cfg, seed=1, dtype=np.float64)
    idx, _, _ = task.make_batch(np.random.default_rng(5), 3, 2, 1.0, 0.0)
    want = infini.forward(params, idx, cfg).argmax(axis=-1)
    assert np.array_equal(ev.greedy_predictions(params, cfg, idx, chunk=37), want)


def test_offset_accuracy_counts_by_segment_position(monkeypatch):
    cfg = infini.Config(vocab_size=task.VOCAB_SIZE, n_layer=1, n_head=2, d_model=16, segment_len=16)
    params = infini.init_params(cfg, seed=0)

    def oracle(params, cfg, idx):  # the true next character, but a wrong one at position 0 of each segment
        nxt = np.concatenate([idx[:, 1:], np.full((len(idx), 1), task.STOI["\n"])], axis=1)
        nxt[nxt == task.STOI["\n"]] = task.STOI["."]                          # a row's last target: the answer's "."
        nxt[:, ::cfg.segment_len] = task.STOI["T"]                           # never an answer character
        return nxt
    monkeypatch.setattr(ev, "greedy_predictions", oracle)
    acc, counts = ev.offset_accuracy(params, cfg, n_max=3, batches=6, batch_size=4)
    assert len(acc) == len(counts) == 16 and sum(counts) >= 24 * 3        # 24 answers of 3+ characters
    assert acc[0] == 0.0 and counts[0] > 0
    assert all(a == 100.0 for a in acc[1:] if a is not None)
    assert ev.describe_offsets(acc).startswith("0: 0%, the other ")
    wide = infini.Config(vocab_size=task.VOCAB_SIZE, n_layer=1, n_head=2, d_model=16, segment_len=64)
    _, counts = ev.offset_accuracy(infini.init_params(wide), wide, n_max=0, batches=10, batch_size=8)
    assert sum(n > 0 for n in counts) >= 48     # shifted prompts: not only the ~10 positions of 1-5 digit keys


@pytest.mark.parametrize("text, key, ok", [
    (" 9054.", 9054, True), ("9054", 9054, True), (" 9054 is", 9054, True), (" 9054.\nW", 9054, True),
    (" 905.", 9054, False), (" 90544", 9054, False), (" 09054", 9054, True), (" key.", 9054, False),
    ("", 9054, False), (" 9O54", 9054, False)])
def test_exact_match(text, key, ok):
    assert task.is_correct(text, key) is ok


def test_answer_accuracy_counts_the_most_weighted_targets():
    idx, targets, weights = task.make_batch(np.random.default_rng(8), 3, 2, 1.0, 0.02)
    top = weights >= weights.max()                                         # the answer and the key's copy
    assert task.answer_accuracy(targets, targets, weights) == 1.0
    wrong = targets.copy()
    wrong[top & (np.cumsum(top, axis=1) == 1)] = task.STOI["T"]            # the first of each row: wrong
    assert task.answer_accuracy(wrong, targets, weights) == pytest.approx(1 - 3 / top.sum())
    assert task.answer_accuracy(np.where(top, targets, task.STOI["T"]), targets, weights) == 1.0  # the rest: no say


def test_parse_and_digit_accuracy():
    assert task.parse_answer(" 9054.") == 9054 and task.parse_answer(" key.") is None
    assert task.digit_accuracy(" 9051.", 9054) == 0.75 and task.digit_accuracy(" 9054.", 9054) == 1.0


# -----------------------------------------------------------------------------
# batched streaming generation and the weighted loss


@pytest.mark.parametrize("memory", ["none", "delta"])
def test_batched_generation_equals_one_at_a_time(memory):
    cfg = infini.Config(vocab_size=task.VOCAB_SIZE, n_layer=1, n_head=2, d_model=16, segment_len=16, memory=memory)
    params = infini.init_params(cfg, seed=3)
    params["wte"] *= 50  # a random model with confident, varied predictions
    prompts = [task.make_prompt(600, d, k)[0] for d, k in [(0.0, 11111), (1.0, 22222), (0.5, 31337)]]
    together = ev.generate_batch(params, cfg, prompts, chunk=100)
    alone = [ev.generate_batch(params, cfg, [p], chunk=37)[0] for p in prompts]
    assert together == alone and all(len(t) == ev.MAX_NEW for t in together)
    # the streamed logits are the full forward's
    ids = task.encode(prompts[0])[None, :]
    full = infini.forward(params, ids, cfg)[0, -1]
    assert task.decode([int(full.argmax())]) == together[0][0]


def test_prompts_stream_in_pieces():
    """Evaluation never builds a prompt whole: the pieces make the same text and length,
    give the same answers as the string, and prompts of unequal length are refused."""
    for x, y, key in [(0, 0, 7), (3, 0, 123), (0, 2, 50000), (5, 4, 9054)]:
        text = task.make_prompt_parts(x, y, key)
        assert task.prompt_length(x, y, key) == len(text)
        assert "".join(ev.text_chunks(task.prompt_pieces(x, y, key), 37)) == text
        assert all(len(c) == 37 for c in list(ev.text_chunks(task.prompt_pieces(x, y, key), 37))[:-1])
    cfg = infini.Config(vocab_size=task.VOCAB_SIZE, n_layer=1, n_head=2, d_model=8, segment_len=16, memory="delta")
    params = infini.init_params(cfg, seed=0)
    specs = [(20, 3, 12345), (2, 21, 54321)]
    as_text = ev.generate_batch(params, cfg, [task.make_prompt_parts(*s) for s in specs], chunk=64)
    assert ev.generate_batch(params, cfg, [task.prompt_pieces(*s) for s in specs], chunk=64) == as_text
    a = task.make_prompt_parts(*specs[0])
    for bad in ([a, a + "x" * 64], [a + "x" * 64, a], [a, a[:-1]]):
        with pytest.raises(ValueError, match="one length"):
            ev.generate_batch(params, cfg, bad, chunk=64)


def weighted_loss_and_grads(params, idx, targets, weights, cfg, attention=infini.PLAIN_ATTENTION):
    """What passkey.py computes at each step: the weighted loss, its gradients and the answer's accuracy."""
    loss, grads, logits = infini.loss_and_grads(params, idx, targets, cfg, attention, weights=weights,
                                                return_logits=True)
    return loss, grads, task.answer_accuracy(infini.to_numpy(logits.argmax(axis=-1)), infini.to_numpy(targets),
                                             infini.to_numpy(weights))


def test_weighted_loss_gradient():
    cfg = infini.Config(vocab_size=task.VOCAB_SIZE, n_layer=1, n_head=2, d_model=8, segment_len=64, memory="delta")
    params = infini.init_params(cfg, seed=1, dtype=np.float64)
    idx, targets, weights = task.make_batch(np.random.default_rng(1), 2, 0, 1.0, 0.1)
    loss, grads, _ = weighted_loss_and_grads(params, idx, targets, weights, cfg)
    # all weights equal: the plain mean of infini.loss_and_grads
    loss1, grads1, _ = weighted_loss_and_grads(params, idx, targets, (targets != -1).astype(float), cfg)
    loss2, grads2 = infini.loss_and_grads(params, idx, targets, cfg)
    assert abs(loss1 - loss2) < 1e-10 and np.allclose(grads1["h.0.wq"], grads2["h.0.wq"])
    # a finite-difference check of one weight
    h = 1e-5
    for name, i in [("h.0.wk", (3, 5)), ("wte", (task.STOI["5"], 2))]:
        p = {k: v.copy() for k, v in params.items()}
        p[name][i] += h
        up = weighted_loss_and_grads(p, idx, targets, weights, cfg)[0]
        p[name][i] -= 2 * h
        down = weighted_loss_and_grads(p, idx, targets, weights, cfg)[0]
        assert abs((up - down) / (2 * h) - grads[name][i]) < 1e-6 * max(1.0, abs(grads[name][i]))


def test_memory_penalty_gradient():
    """The penalties' gradient is that of loss + ks * mean(relu(k + km)) + qs * mean(relu(q + qm)) per layer;
    the mean counts the heads whose memory is open (and divides by every key of the layer)."""
    cfg = infini.Config(vocab_size=task.VOCAB_SIZE, n_layer=2, n_head=2, d_model=8, segment_len=16, memory="delta")
    params = infini.init_params(cfg, seed=2, dtype=np.float64)
    for l in range(2):
        params[f"h.{l}.wk"] *= 30                                          # keys and queries on both
        params[f"h.{l}.wq"] *= 30                                          #   sides of -margin
    params["h.0.beta"][:] = pm.CLOSED_GATE                                 # layer 0 closed, and layer 1's
    params["h.1.beta"][1] = pm.CLOSED_GATE                                 #   second head: no penalty there
    idx, targets, weights = task.make_batch(np.random.default_rng(2), 2, 0, 1.0, 0.1)
    ks, km, qs, qm = 0.5, 0.3, 0.7, 0.2
    att = pm.memory_penalty(ks, km, qs, qm)

    def total(p):
        loss = weighted_loss_and_grads(p, idx, targets, weights, cfg)[0]
        x = p["wte"][idx]
        for l in range(cfg.n_layer):                                       # the keys and queries, recomputed
            h, _ = infini.rmsnorm_forward(x, p[f"h.{l}.norm1"])
            open_columns = np.repeat(p[f"h.{l}.beta"] > pm.CLOSED_GATE / 2, cfg.head_size)
            loss += ks * (np.maximum(h @ p[f"h.{l}.wk"] + km, 0) * open_columns).mean()
            loss += qs * (np.maximum(h @ p[f"h.{l}.wq"] + qm, 0) * open_columns).mean()
            x = x + infini.attention_forward(h, p, l, cfg)[0]
            h2, _ = infini.rmsnorm_forward(x, p[f"h.{l}.norm2"])
            x = x + infini.mlp_forward(h2, p[f"h.{l}.w1"], p[f"h.{l}.w2"])[0]
        return loss

    _, grads, _ = weighted_loss_and_grads(params, idx, targets, weights, cfg, att)
    _, plain, _ = weighted_loss_and_grads(params, idx, targets, weights, cfg)
    _, keys_only, _ = weighted_loss_and_grads(params, idx, targets, weights, cfg, pm.memory_penalty(ks, km))
    assert not np.allclose(grads["h.1.wk"], plain["h.1.wk"])               # both penalties are there
    assert not np.allclose(grads["h.1.wq"], keys_only["h.1.wq"])
    assert np.array_equal(keys_only["h.1.wq"], plain["h.1.wq"])            # query_strength 0: off
    for name in ("h.1.wk", "h.1.wq"):                                      # the closed head's columns
        assert np.array_equal(grads[name][:, cfg.head_size:], plain[name][:, cfg.head_size:])
    h = 1e-6
    for name, i in [("h.0.wk", (3, 5)), ("h.1.wk", (1, 2)), ("h.1.wk", (1, 6)), ("h.0.wq", (2, 1)), ("h.1.wq", (4, 3)),
                    ("h.1.wq", (4, 7)),
                    ("h.0.norm1", (2,)), ("wte", (task.STOI["e"], 4))]:
        p = {k: v.copy() for k, v in params.items()}
        p[name][i] += h
        up = total(p)
        p[name][i] -= 2 * h
        down = total(p)
        num = (up - down) / (2 * h)
        assert abs(num - grads[name][i]) <= 1e-6 * max(1.0, abs(num)), (name, num, grads[name][i])


@pytest.mark.parametrize("memory", ["linear", "delta"])
def test_far_memory_is_the_memory_filler_leaves(memory):
    """filler_memory: z grows by the same amount with every filler cycle (one layer: its keys see
    the text alone), so F characters leave F * (z per character); far_memory draws F in
    n..far_fill for about 3/4 of the prompts, 0 (an empty memory) for the others."""
    cfg = infini.Config(vocab_size=task.VOCAB_SIZE, n_layer=1, n_head=2, d_model=8, segment_len=16, memory=memory)
    params = infini.init_params(cfg, seed=4, dtype=np.float64)
    filler, n = pm.filler_memory(params, cfg)
    assert n == 720                                                        # lcm(90, 16)
    state = infini.init_state(params, cfg, 1)
    _, state = infini.forward_stream(params, np.array([task.encode((" " + F) * 16)]), state, cfg)  # 2 cycles
    assert np.allclose(state["z"][0][0], 2 * n * filler[0][1], rtol=1e-12)
    far = pm.far_memory(filler, n, np.random.default_rng(0), 400, 100_000, memory)
    M, z = far[0]
    f = z[:, 0, 0] / filler[0][1][0, 0]                                    # the F of each prompt
    on = f > 0
    assert 0.65 < on.mean() < 0.85 and f[on].min() >= n * (1 - 1e-9) and f.max() <= 100_000 * (1 + 1e-9)
    assert np.allclose(z, f[:, None, None] * filler[0][1], rtol=1e-12)
    assert not M[~on].any()
    want = filler[0][0] if memory == "delta" else (f[on] / n)[:, None, None, None] * filler[0][0]
    assert np.allclose(M[on], want, rtol=1e-12)
    idx = task.make_batch(np.random.default_rng(1), 400, 0, 1.0, 0.1)[0]
    h = infini.rmsnorm_forward(params["wte"][idx], params["h.0.norm1"])[0]
    got = pm.memory_penalty(0.1, 8.0, prefill=far)[0](h, params, 0, cfg)[0]
    assert np.array_equal(got, infini.attention_forward(h, params, 0, cfg, memory=far[0])[0])


def test_far_fill_prefills_the_tune_phase_only(tmp_path, monkeypatch):
    far_memory, filler_memory, seen = pm.far_memory, pm.filler_memory, []
    monkeypatch.setattr(pm, "filler_memory", lambda *a: seen.append("measure") or filler_memory(*a))
    monkeypatch.setattr(pm, "far_memory", lambda *a: seen.append(a[3:]) or far_memory(*a))
    assert pk.main(tiny_settings(tmp_path / "far", memory="linear", eval_lengths="300", far_fill=1000)) == 0
    assert seen == ["measure", (2, 1000, "linear"), (2, 1000, "linear")]  # 2 tune steps of batch 2, after 2 plain
    assert pk.main(tiny_settings(tmp_path / "plain", memory="linear", eval_lengths="300")) == 0
    far, plain = (np.load(tmp_path / d / "linear" / "model.npz") for d in ("far", "plain"))
    assert not np.array_equal(far["param/h.0.wq"], plain["param/h.0.wq"])


def closed_first_layer_model(chars, seed=0):
    """A random 2-layer model of the recipe's shape: the first layer's memory closed."""
    cfg = infini.Config(vocab_size=len(chars), n_layer=2, n_head=2, d_model=16, segment_len=16, memory="linear")
    params = infini.init_params(cfg, seed=seed, dtype=np.float64)
    params["h.0.beta"][:] = pm.CLOSED_GATE
    return params, cfg


DILUTION_TEXT = "Zounds, the lazy zebra dozes by a hazy maze; quiz the fizz of buzzing bees.\n" * 12


def test_dilution_reads_the_haystack_in_chunks_as_in_one_pass():
    chars = sorted(set(DILUTION_TEXT + "".join(task.CHARS)))
    stoi = {ch: i for i, ch in enumerate(chars)}
    params, cfg = closed_first_layer_model(chars)
    text = DILUTION_TEXT[:640]
    whole = ev.dilution(params, cfg, text, stoi, n_prompts=2, length=400, chunk=640, haystack=DILUTION_TEXT)
    parts = ev.dilution(params, cfg, text, stoi, n_prompts=2, length=400, chunk=50,   # cut to 48: 3 segments
                        haystack=DILUTION_TEXT)
    for a, b in zip(whole, parts):
        assert a["top_char"] == b["top_char"] and a["key"] == b["key"] > 0
        assert np.isclose(a["per_char"], b["per_char"], rtol=1e-9) and np.isclose(a["top_share"], b["top_share"])


def test_dilution_names_the_character_whose_keys_fill_the_memory():
    """A character given a large key in the last layer in every dimension carries most of the
    haystack's weight in the read, and the key line's share falls with the length."""
    chars = sorted(set(DILUTION_TEXT + "".join(task.CHARS)))
    stoi = {ch: i for i, ch in enumerate(chars)}
    params, cfg = closed_first_layer_model(chars)
    before = ev.dilution(params, cfg, DILUTION_TEXT, stoi, n_prompts=2, length=400, haystack=DILUTION_TEXT)
    assert all(h["top_char"] != "z" for h in before)
    params["h.0.wo"][:] = 0.0                                  # the last layer reads the embeddings alone
    params["h.0.w2"][:] = 0.0
    z = params["wte"][stoi["z"]] / np.linalg.norm(params["wte"][stoi["z"]])
    others = [i for ch, i in stoi.items() if ch != "z"]
    params["wte"][others] -= np.outer(params["wte"][others] @ z, z)  # no other character points along z
    params["h.1.wk"] += 20 * np.outer(z, np.ones(cfg.d_model))       # ... so only z's keys grow, by about 20 * 4
    after = ev.dilution(params, cfg, DILUTION_TEXT, stoi, n_prompts=2, length=400, haystack=DILUTION_TEXT)
    for h in after:
        assert h["top_char"] == "z" and h["top_share"] > 0.5, after
    line = ev.describe_dilution(after, lengths=(1000, 1000000))[0]
    share = [float(x.split(" at ")[0]) for x in line.split("share ")[1].split(";")[0].split(", ")]
    assert share[0] > share[1] and "'z' carries" in line


def test_memory_penalty_leaves_none_alone():
    cfg = infini.Config(vocab_size=task.VOCAB_SIZE, n_layer=1, n_head=2, d_model=8, segment_len=16, memory="none")
    params = infini.init_params(cfg, seed=3, dtype=np.float64)
    idx, targets, weights = task.make_batch(np.random.default_rng(3), 2, 0, 1.0, 0.1)
    _, plain, _ = weighted_loss_and_grads(params, idx, targets, weights, cfg)
    _, pen, _ = weighted_loss_and_grads(params, idx, targets, weights, cfg, pm.memory_penalty(1.0, 0.0, 1.0, 0.0))
    assert all(np.array_equal(plain[k], pen[k]) for k in plain)


def test_schedule_has_a_tune_phase():
    c = dict(pk.DEFAULTS, max_iters=100, warmup_iters=10, curriculum_iters=20, long_iters=50, n_start=0, n_end=4,
             n_long=6, tune_iters=40, learning_rate=1e-2, min_lr=1e-3, tune_lr=5e-3, tune_min_lr=5e-4)
    assert pk.get_lr(99, c) == pytest.approx(1e-3, rel=5e-2)               # the end of the main phase
    assert pk.get_lr(100, c) == pytest.approx(5e-3 / 11)                   # warmup again, to tune_lr
    assert pk.get_lr(109, c) == pytest.approx(5e-3 * 10 / 11)
    assert pk.get_lr(110, c) == pytest.approx(5e-3)
    assert pk.get_lr(139, c) == pytest.approx(5e-4, rel=5e-2) and pk.get_lr(139, c) >= 5e-4
    assert [pk.n_max_at(s, c) for s in (0, 20, 49, 99, 100, 139)] == [0, 4, 4, 6, 6, 6]
    assert pk.total_iters(c) == 140
    assert pk.train_len(c) == len(task.make_prompt_parts(6, 0, task.KEY_MAX)) + c["shift_max"]   # + leading newlines


# -----------------------------------------------------------------------------
# end to end


def tiny_settings(tmp_path, **overrides):
    c = dict(pk.DEFAULTS)
    for arg in TINY:
        key, value = arg[2:].split("=")
        c[key] = type(c[key])(value) if not isinstance(c[key], str) else value
    c.update({"out_dir": str(tmp_path), "init_from": "scratch", "memory": "delta", "eval_lengths": "300,700",
              **overrides})
    return c


def train_delta(tmp_path, **overrides):
    """A tiny delta model in tmp_path/delta, from the tiny linear model it starts from (tmp_path/linear).
    -> main's exit status for delta."""
    assert pk.main(tiny_settings(tmp_path, **dict(overrides, memory="linear", eval_lengths="300"))) == 0
    return pk.main(tiny_settings(tmp_path, **overrides))


def test_tiny_run_writes_results(tmp_path, capsys):
    assert train_delta(tmp_path) == 0
    out = json.loads((tmp_path / "delta" / "results.json").read_text())
    assert out["memory"] == "delta" and out["train_len"] == len(task.make_prompt_parts(1, 0, task.KEY_MAX)) + 3
    assert set(out["results"]) == {"300", "700"}
    for cell in out["results"].values():
        assert set(cell) == {"start", "middle", "end"} and all(0 <= v <= 100 for v in cell.values())
    assert (tmp_path / "delta" / "heatmap.png").stat().st_size > 1000
    assert (tmp_path / "delta" / "ckpt.npz").exists()
    printed = capsys.readouterr().out
    assert "| memory | 300 | 700 |" in printed and "| delta |" in printed
    assert len(out["dilution"]) == 2 and "key line's share" in printed   # the tiny model's 2 heads



def test_gpu_path_on_a_cupy_stand_in(tmp_path, monkeypatch, capsys):
    """--device=cuda on the strict CuPy stand-in (tests/fakecupy.py): training, the tune phase,
    the checkpoint and the evaluation give what the CPU gives (far_fill's memory included)."""
    import checkpoint
    import fakecupy
    fewer = functools.partial(ev.offset_accuracy, batches=4)    # the teacher-forced scores: fewer prompts, both devices
    monkeypatch.setattr(ev, "offset_accuracy", fewer)
    assert train_delta(tmp_path / "cpu", far_fill=1000) == 0
    fakecupy.install(monkeypatch)
    assert train_delta(tmp_path / "gpu", device="cuda", far_fill=1000) == 0
    cpu, gpu = (json.loads((tmp_path / d / "delta" / "results.json").read_text()) for d in ("cpu", "gpu"))
    assert gpu["results"] == cpu["results"] and gpu["samples"] == cpu["samples"]
    assert gpu["offset_accuracy"] == cpu["offset_accuracy"]
    params, opt, meta = checkpoint.load_checkpoint(tmp_path / "gpu" / "delta" / "ckpt.npz")
    assert type(params["wte"]) is np.ndarray and type(opt["m"]["wte"]) is np.ndarray
    cpu_params, _, _ = checkpoint.load_checkpoint(tmp_path / "cpu" / "delta" / "ckpt.npz")
    assert all(np.allclose(params[k], cpu_params[k], rtol=1e-5, atol=1e-7) for k in params)
    shipped = dict(pk.DEFAULTS, memory="delta", eval_lengths="400", eval_depths="0.5", eval_samples=2,
                   out_dir=str(tmp_path / "shipped"), device="cuda")                     # the shipped model
    assert pk.main(shipped) == 0
    monkeypatch.undo()
    monkeypatch.setattr(ev, "offset_accuracy", fewer)
    assert pk.main(dict(shipped, device="cpu", out_dir=str(tmp_path / "shipped_cpu"))) == 0
    gpu, cpu = (json.loads((tmp_path / d / "delta" / "results.json").read_text()) for d in ("shipped", "shipped_cpu"))
    assert gpu["samples"] == cpu["samples"] and gpu["offset_accuracy"] == cpu["offset_accuracy"]


def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    try:
        infini.backend("cuda")
        pytest.skip("a GPU is present")
    except ValueError:
        pass
    assert pk.main(tiny_settings(tmp_path, device="cuda")) == 2           # as train.py and sample.py
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "cuda" in err.lower()
    assert not (tmp_path / "delta").exists()                               # nothing written


def test_resume_evaluates_without_training(tmp_path, capsys):
    assert train_delta(tmp_path) == 0
    before = (tmp_path / "delta" / "ckpt.npz").read_bytes()
    capsys.readouterr()
    assert pk.main(tiny_settings(tmp_path, init_from="resume", eval_lengths="400")) == 0
    assert (tmp_path / "delta" / "ckpt.npz").read_bytes() == before        # no step was taken
    assert set(json.loads((tmp_path / "delta" / "results.json").read_text())["results"]) == {"400"}
    assert "train" not in capsys.readouterr().err.split("eval")[0]


def run(*args):
    return scripts.run("passkey.py", *args)


def test_script_starts_and_finishes(tmp_path):
    r = run("--train", "--memory=linear", f"--out_dir={tmp_path}", "--eval_lengths=300", *TINY)
    assert r.returncode == 0, r.stderr
    assert "| linear |" in r.stdout
    assert json.loads((tmp_path / "linear" / "results.json").read_text())["memory"] == "linear"


@pytest.mark.parametrize("far_fill", [0, 1000])
def test_interrupted_run_resumes_to_the_same_model(tmp_path, monkeypatch, far_fill):
    """Stopped in the tune phase (after the checkpoint at max_iters), resumed: the same weights
    as a run never stopped, the tune phase's fresh optimiser (and far_fill's memory) included."""
    settings = dict(memory="linear", eval_lengths="300", far_fill=far_fill)     # delta has no checkpoint
    assert pk.main(tiny_settings(tmp_path / "straight", **settings)) == 0          #   at max_iters
    want = np.load(tmp_path / "straight" / "linear" / "model.npz")
    make_batch, calls = task.make_batch, []

    def stop_at_step_3(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return make_batch(*args)
    monkeypatch.setattr(task, "make_batch", stop_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        pk.main(tiny_settings(tmp_path / "stopped", **settings))
    monkeypatch.setattr(task, "make_batch", make_batch)
    assert pk.checkpoint.load_checkpoint(str(tmp_path / "stopped" / "linear" / "ckpt.npz"))[2]["step"] == 2
    assert pk.main(tiny_settings(tmp_path / "stopped", memory="linear", init_from="resume", eval_lengths="300")) == 0
    got = np.load(tmp_path / "stopped" / "linear" / "model.npz")
    names = [k for k in want.files if k.startswith("param/")]
    assert names and all(np.array_equal(want[k], got[k]) for k in names)


def test_short_keys_and_key_last_start_after_the_curriculum(tmp_path, monkeypatch):
    make_batch, mixes = task.make_batch, []

    def record(rng, batch_size, n_max, ans_weight, lm_weight, shift_max=0, short_keys=0.0, key_last=0.0, *rest):
        mixes.append((short_keys, key_last))
        return make_batch(rng, batch_size, n_max, ans_weight, lm_weight, shift_max, short_keys, key_last, *rest)
    monkeypatch.setattr(task, "make_batch", record)
    assert pk.main(tiny_settings(tmp_path, memory="linear", eval_lengths="300", curriculum_iters=1, short_keys=0.5,
                                 key_last=0.25)) == 0
    assert mixes[:4] == [(0.0, 0.0)] + [(0.5, 0.25)] * 3                 # 4 training steps, then evaluation


def test_delta_starts_from_the_linear_model(tmp_path, monkeypatch):
    """--memory=all: linear trains first; delta starts from its weights and trains the tune phase alone."""
    loss_and_grads, seen = infini.loss_and_grads, []

    def record(params, idx, targets, cfg, attention, **kwargs):
        seen.append((cfg.memory, {k: v.copy() for k, v in params.items()}))
        return loss_and_grads(params, idx, targets, cfg, attention, **kwargs)
    monkeypatch.setattr(infini, "loss_and_grads", record)
    assert pk.main(tiny_settings(tmp_path, memory="all", eval_lengths="300")) == 0
    memories = [m for m, _ in seen]
    assert memories[:4] == ["none"] * 4 and memories[4:8] == ["linear"] * 4 and memories[8:] == ["delta"] * 2
    linear, _, _ = pk.load_model(str(tmp_path / "linear" / "model.npz"))
    first = seen[8][1]
    assert all(np.array_equal(first[k], linear[k]) for k in linear)
    assert pk.checkpoint.load_checkpoint(str(tmp_path / "delta" / "ckpt.npz"))[2]["step"] == 4


def test_init_weights_starts_training_from_a_trained_model(tmp_path, monkeypatch, capsys):
    """--init_weights: the main phase starts from that model's weights; another shape is a one-line error."""
    assert pk.main(tiny_settings(tmp_path / "a", memory="linear", eval_lengths="300")) == 0
    first = str(tmp_path / "a" / "linear" / "model.npz")
    trained, _, _ = pk.load_model(first)
    loss_and_grads, seen = infini.loss_and_grads, []

    def record(params, idx, targets, cfg, attention, **kwargs):
        seen.append({k: v.copy() for k, v in params.items()})
        return loss_and_grads(params, idx, targets, cfg, attention, **kwargs)
    monkeypatch.setattr(infini, "loss_and_grads", record)
    assert pk.main(tiny_settings(tmp_path / "b", memory="linear", eval_lengths="300", init_weights=first)) == 0
    assert all(np.array_equal(seen[0][k], trained[k]) for k in trained)
    fresh = pk.init_model(tiny_settings(tmp_path, memory="linear"), "linear", pk.Task(task.CHARS))
    assert not all(np.array_equal(fresh[k], trained[k]) for k in trained)  # not what a fresh start gives
    capsys.readouterr()
    assert pk.main(tiny_settings(tmp_path / "c", memory="none", eval_lengths="300", init_weights=first)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --init_weights") and "not a none model" in err and "\n" not in err
    r = run("--train", "--init_weights=nothing.npz")
    assert r.returncode == 2 and "--init_weights: no file nothing.npz" in r.stderr
    assert r.stderr.strip().count("\n") == 0


def test_delta_needs_the_linear_model(tmp_path, capsys):
    assert pk.main(tiny_settings(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "--memory=linear" in err
    assert pk.main(tiny_settings(tmp_path, memory="linear", eval_lengths="300")) == 0
    assert pk.main(tiny_settings(tmp_path, d_model=8)) == 1                             # another shape
    assert "not a linear model of these settings" in capsys.readouterr().err


def test_bad_setting_is_one_line():
    r = run("--memory=lstm")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--memory" in r.stderr
    r = run("--eval_lengths=100")
    assert r.returncode == 2 and "eval_lengths" in r.stderr and "Traceback" not in r.stderr
    r = run("--memory_layers=0")
    assert r.returncode == 2 and "--memory_layers" in r.stderr and r.stderr.strip().count("\n") == 0
    r = run("--shift_max=-1")
    assert r.returncode == 2 and "--shift_max" in r.stderr and r.stderr.strip().count("\n") == 0
    r = run("--short_keys=1.5")
    assert r.returncode == 2 and "--short_keys" in r.stderr and r.stderr.strip().count("\n") == 0
    r = run("--far_fill=5000")                                             # less than one filler cycle
    assert r.returncode == 2 and "--far_fill" in r.stderr and r.stderr.strip().count("\n") == 0
    r = run("--train", "--rope_base=0")
    assert r.returncode == 2 and "rope_base" in r.stderr and r.stderr.strip().count("\n") == 0


def test_retired_settings_are_unknown():
    """The settings that only replayed failed runs are gone (docs/passkey_runs.md: commit a4c2472 has them)."""
    for arg in ("--memory_heads=2", "--local_layers=1", "--shift_from=2500", "--penalize_closed=True",
                "--long_batch_size=8", "--delta_from_linear=False"):
        r = run(arg)
        assert r.returncode == 2 and "unknown key" in r.stderr and r.stderr.strip().count("\n") == 0, arg


def test_every_setting_has_its_own_comment():
    """--help prints each setting with the comment of its own line in passkey.py."""
    comments = {k: v for k, v in configurator.setting_comments(str(ROOT / "passkey.py")).items() if k in pk.DEFAULTS}
    assert set(comments) == set(pk.DEFAULTS) and all(comments.values())
    assert len(set(comments.values())) == len(comments)                   # no comment shared or repeated
    r = run("--help")
    assert r.returncode == 0
    for key, comment in comments.items():
        assert f"  # {comment}" in r.stdout and f"  {key} = " in r.stdout, key


def test_the_recipe_file_is_the_defaults():
    """config/passkey.py is the shipped recipe: every training setting, at passkey.py's default."""
    recipe = configurator.read_config_file(str(ROOT / "config" / "passkey.py"), pk.DEFAULTS)
    run_only = {"out_dir", "memory", "init_from", "init_weights", "train", "overwrite", "device", "eval_lengths",
                "eval_depths", "eval_samples", "eval_batch_size", "eval_keys"}
    assert set(recipe) == set(pk.DEFAULTS) - run_only
    assert all(pk.DEFAULTS[k] == v and type(pk.DEFAULTS[k]) is type(v) for k, v in recipe.items()), recipe


def test_the_multikey_recipe_starts_from_the_shipped_haystack_models(monkeypatch):
    """config/multikey.py is valid, and each model it starts from loads into the model it trains."""
    monkeypatch.chdir(ROOT)
    c = dict(pk.DEFAULTS, **configurator.read_config_file(str(ROOT / "config" / "multikey.py"), pk.DEFAULTS))
    pk.validate(c)
    assert c["max_keys"] > 1 and c["filler"] == "plays"
    for mode in ("linear", "none"):
        path = str(ROOT / "passkey_ckpt" / f"haystack-{mode}.npz")
        shipped, _, meta = pk.load_model(path)
        params = pk.init_model(dict(c, init_weights=path), mode, pk.Task(meta["tokenizer"]["itos"]))
        assert set(params) == set(shipped) and all(np.array_equal(params[k], shipped[k]) for k in shipped)


def test_no_script_imports_passkey():
    """passkey.py is a script: the modules it uses (passkey_task, passkey_eval, passkey_memory) never import it."""
    for path in [*ROOT.glob("*.py"), *ROOT.glob("speed/*.py"), *ROOT.glob("data/**/*.py"), *ROOT.glob("labs/*.py")]:
        text = path.read_text()
        assert not re.search(r"^\s*(import passkey\b(?!_)|from passkey import)", text, re.M), path


def test_rope_base_reaches_the_model(tmp_path):
    assert pk.main(tiny_settings(tmp_path, memory="linear", eval_lengths="300", rope_base=500.0)) == 0
    _, cfg, _ = pk.load_model(str(tmp_path / "linear" / "model.npz"))
    assert cfg.rope_base == 500.0 and pk.model_config(pk.DEFAULTS, "delta").rope_base == 10000.0


@pytest.mark.parametrize("n_layer,memory_layers,closed", [(1, 1, 0), (2, 1, 1), (3, 1, 2), (2, 2, 0), (2, 5, 0)])
def test_memory_layers_close_the_first_gates(tmp_path, n_layer, memory_layers, closed):
    """A tiny run: the layers before the memory_layers ones have their gates shut, and stay so."""
    c = tiny_settings(tmp_path, memory="linear", n_layer=n_layer, memory_layers=memory_layers, key_penalty=0.5)
    pk.main(c)
    params, _, meta = pk.load_model(str(tmp_path / "linear" / "model.npz"))
    H = c["n_head"]
    betas = [params[f"h.{l}.beta"].tolist() for l in range(n_layer)]
    assert betas == [[pm.CLOSED_GATE] * H] * closed + [[c["beta_init"]] * H] * (n_layer - closed)
    assert meta["config"]["key_penalty"] == 0.5


@pytest.mark.slow
def test_full_demo(tmp_path):
    """python passkey.py: the shipped models, evaluated up to 32x their training length; the
    goal is >= 90% exact match at start, middle and end there."""
    r = scripts.run("passkey.py", f"--out_dir={tmp_path}", timeout=900)
    assert r.returncode == 0, r.stderr
    delta = json.loads((tmp_path / "delta" / "results.json").read_text())
    longest = max(delta["results"], key=int)
    assert int(longest) >= 32 * delta["train_len"]
    print(r.stdout)
    assert min(delta["results"][longest].values()) >= 90, delta["results"]


@pytest.mark.skipif(not (ROOT / "passkey_ckpt" / "delta.npz").exists(), reason="no shipped delta model")
def test_shipped_delta_model_finds_keys_at_its_training_length():
    params, cfg, meta = pk.load_model(str(ROOT / "passkey_ckpt" / "delta.npz"))
    assert cfg.memory == "delta" and infini.num_params(params) < 1_000_000
    res = ev.evaluate(params, cfg, [meta["train_len"]], [0.0, 0.5, 1.0], 6, seed=0)[meta["train_len"]]
    exact = np.mean([r["exact"] for r in res.values()])
    assert exact >= 60, res


@pytest.mark.parametrize("name", ["haystack-linear", "haystack-delta", "haystack-none"])
def test_shipped_haystack_models_read_the_plays_vocabulary_and_find_keys(name):
    """The haystack models read the plays' 76 characters (the template's among them) and, on the
    filler line (no prepared plays needed), find keys at their training length; the baseline
    without memory loses a key at the start, segments before the question."""
    params, cfg, meta = pk.load_model(str(ROOT / "passkey_ckpt" / f"{name}.npz"))
    chars = meta["tokenizer"]["itos"]
    assert meta["filler"] == "plays" and cfg.memory == name.split("-")[1] and len(chars) == 76
    assert set(task.CHARS) <= set(chars) and set("ROMEO:\n!?;") <= set(chars)
    res = ev.evaluate(params, cfg, [meta["train_len"]], [0.0, 0.5, 1.0], 6, seed=0, chars=chars)[meta["train_len"]]
    if cfg.memory == "none":
        assert res[0.0]["exact"] == 0, res
    else:
        assert np.mean([r["exact"] for r in res.values()]) >= 60, res


def test_shipped_multikey_models_find_one_named_key_at_their_training_length():
    """On the filler line (no prepared plays needed): linear and delta find one named key, none
    (which reads the question's segment only) rarely; two keys are not told apart (README)."""
    found = {}
    for mode in ("linear", "delta", "none"):
        params, cfg, meta = pk.load_model(str(ROOT / "passkey_ckpt" / f"multikey-{mode}.npz"))
        n = meta["train_len"]
        assert meta["config"]["max_keys"] == 4 and cfg.memory == mode
        found[mode] = ev.evaluate_multikey(params, cfg, [1], [n], 10, seed=0, chars=meta["tokenizer"]["itos"])[1][n]
    assert found["linear"]["exact"] >= 60 and found["delta"]["exact"] >= 60, found
    assert found["none"]["exact"] <= 30, found


@pytest.mark.skipif(not (ROOT / "passkey_ckpt" / "delta.npz").exists(), reason="no shipped delta model")
def test_sample_py_loads_the_passkey_model():
    """Anyone can type their own prompt: sample.py reads the shipped passkey checkpoints."""
    import sample
    params, cfg, tok = sample.load_model(str(ROOT / "passkey_ckpt" / "delta.npz"))
    assert cfg.memory == "delta"
    text, answer = task.make_prompt(600, 0.5, 4321)
    assert tok.decode(tok.encode(text + answer)) == text + answer


# -----------------------------------------------------------------------------
# the real haystack and multi-key retrieval

TRAIN_TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 30   # stand-ins for the plays
VAL_TEXT = "HAMLET:\nTo be, or not to be, that is the question:\n\n" * 30


def write_plays(folder):
    """A data folder like data/shakespeare_char's: meta.pkl (itos), train.bin and val.bin."""
    import pickle
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(set(TRAIN_TEXT + VAL_TEXT))
    stoi = {ch: i for i, ch in enumerate(chars)}
    for name, text in (("train.bin", TRAIN_TEXT), ("val.bin", VAL_TEXT)):
        np.array([stoi[ch] for ch in text], dtype=np.uint16).tofile(folder / name)
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars))}, f)
    return folder


def test_load_plays_decodes_the_two_splits(tmp_path):
    train, val = task.load_plays(str(write_plays(tmp_path / "data")))
    assert (train, val) == (TRAIN_TEXT, VAL_TEXT)
    assert set(task.CHARS) <= set(task.haystack_chars(train, val))
    with pytest.raises(FileNotFoundError, match="prepare the plays"):
        task.load_plays(str(tmp_path / "nothing"))


@pytest.mark.parametrize("depth", [0.0, 0.3, 0.5, 1.0])
def test_the_haystack_prompt_has_the_template_length_and_the_key_at_its_depth(depth):
    for length in (400, 1452, 5000):
        prompt, answer = task.make_prompt(length, depth, 9054, haystack=VAL_TEXT, start=17)
        template, _ = task.make_prompt(length, depth, 9054)
        assert len(prompt) == len(template) and answer == " 9054."
        question = "\nWhat is the pass key? The pass key is"
        key_line = "\nThe pass key is 9054. Remember it. 9054 is the pass key."
        assert prompt.startswith(INTRO) and prompt.endswith(question)
        before, after = prompt[len(INTRO):-len(question)].split(key_line)
        x, y = task.prompt_counts(length, depth, 9054)
        assert len(before) == 90 * x and len(after) == 90 * y         # each part: a newline and 90n - 1 characters
        text = before[1:] + after[1:]                                  # the passage, the key line taken out
        assert text == task.passage(VAL_TEXT, 17, len(text))          # one passage of the haystack, read on
        assert "grass" not in prompt and "ROMEO" not in prompt        # real text, the evaluation split only


def test_the_haystack_prompt_streams_in_pieces_as_built_whole():
    pieces = list(task.prompt_pieces(300, 400, 123, VAL_TEXT, 5))
    assert max(map(len, pieces)) <= task.PIECE
    assert "".join(pieces) == task.make_prompt_parts(300, 400, 123, VAL_TEXT, 5)
    assert len("".join(pieces)) == task.prompt_length(300, 400, 123)   # 63,000 characters: the text read on
    assert task.passage("abc", 2, 7) == "cabcabc"


def test_training_batches_cut_the_haystack_from_the_training_text():
    chars = task.haystack_chars(TRAIN_TEXT, VAL_TEXT)
    stoi = {ch: i for i, ch in enumerate(chars)}
    idx, targets, weights = task.make_batch(np.random.default_rng(0), 40, 6, 1.0, 0.02, 0, haystack=TRAIN_TEXT,
                                            template_frac=0.25, stoi=stoi)
    rows = ["".join(chars[i] for i in row) for row in idx]
    real = sum("ROMEO" in r or "yonder" in r for r in rows)
    assert 20 <= real <= 39 and not any("HAMLET" in r for r in rows)  # some rows keep the filler line
    assert all(r.startswith(INTRO) for r in rows)


def test_a_multikey_prompt_has_k_distinct_lines_its_length_and_asks_one():
    rng = np.random.default_rng(0)
    for k in (1, 3, 8, 32):
        pieces, answer, key, depth, keys = task.multikey_prompt(rng, 4000, k, VAL_TEXT, 3)
        prompt = "".join(pieces)
        assert len(prompt) == 4000 and 0 <= depth <= 1
        names = re.findall(r"The pass key of ([A-Z]+) is (\d+)\. Remember it\. \2 is the pass key of \1\.", prompt)
        assert len(names) == k and len({n for n, _ in names}) == k and [int(v) for _, v in names] == keys
        asked = re.search(r"What is the pass key of ([A-Z]+)\? The pass key of \1 is$", prompt).group(1)
        assert dict(names)[asked] == str(key) and answer == f" {key}."
    with pytest.raises(ValueError, match="need at least"):
        task.multikey_prompt(rng, 1500, 32)
    with pytest.raises(ValueError, match="1..32"):
        task.multikey_prompt(rng, 4000, 33)


def test_multikey_batches_weigh_every_key_and_the_answer():
    chars = task.haystack_chars(TRAIN_TEXT, VAL_TEXT)
    stoi = {ch: i for i, ch in enumerate(chars)}
    idx, targets, weights = task.make_multikey_batch(np.random.default_rng(1), 6, 3, 4, 1.0, 0.0, 0, TRAIN_TEXT, stoi)
    for row, t, w in zip(idx, targets, weights):
        text = "".join(chars[i] for i in row[t >= 0]) + chars[t[t >= 0][-1]]
        keys = re.findall(r"Remember it\. (\d+) ", text)
        answer = re.search(r"The pass key of [A-Z]+ is( \d+\.)$", text).group(1)
        assert w.sum() == sum(len(k) + 1 for k in keys) + len(answer)  # each key's second occurrence + " ", the answer


def test_the_multikey_scorer_counts_exact_answers(monkeypatch):
    """evaluate_multikey scores each prompt's greedy answer against the key it asks for."""
    asked = []

    def answer(params, cfg, prompts, chunk=512, max_new=ev.MAX_NEW, chars=task.CHARS):
        texts = ["".join(p) for p in prompts]
        assert len({len(t) for t in texts}) == 1                       # one length: streamed together
        names = [re.search(r"What is the pass key of ([A-Z]+)\?", t).group(1) for t in texts]
        keys = [int(re.search(rf"The pass key of {n} is (\d+)\.", t).group(1)) for n, t in zip(names, texts)]
        asked.extend(keys)
        return [f" {k}." if i % 2 == 0 else f" {k}0." for i, k in enumerate(keys)]  # every other one wrong
    monkeypatch.setattr(ev, "generate_batch", answer)
    res = ev.evaluate_multikey(None, None, [2, 32], [1500, 4000], 4, batch_size=2, haystack=VAL_TEXT)
    assert res[2][1500]["exact"] == res[2][4000]["exact"] == res[32][4000]["exact"] == 50.0
    assert res[32][1500]["exact"] is None and len(asked) == 12
    right = sum(len(str(k)) for k in asked[:4])                         # the cell (2, 1500): its 4 answers
    assert res[2][1500]["asked_digits"] == pytest.approx(100 * right / (right + 2))  # 2 with a "0" too many
    assert "| 32 | - | 50 |" in ev.multikey_table({str(k): {str(n): v["exact"] for n, v in r.items()}
                                                   for k, r in res.items()}, [1500, 4000])


def test_digit_sources_say_which_key_each_digit_comes_from():
    assert task.digit_sources(" 12345.", 12345, [67890]) == (5, 5, 0)
    assert task.digit_sources(" 12890.", 12345, [67890]) == (5, 2, 3)   # a read that mixes the two keys
    assert task.digit_sources(" 62340.", 12345, [67890, 2340]) == (5, 3, 2)
    assert task.digit_sources(" 123456.", 12345, []) == (6, 5, 0)      # a digit too many matches nothing
    assert task.digit_sources(" And me", 12345, [67890]) == (0, 0, 0)


def test_multikey_read_splits_the_answers_weights_by_line_and_part(monkeypatch):
    """With keys that are 1 on digits and 0 elsewhere and queries of ones, every weight is the
    digits': each key line weighs its two copies of the key's digits, times D = 4, in each head."""
    chars = task.haystack_chars(TRAIN_TEXT, VAL_TEXT)
    stoi = {ch: i for i, ch in enumerate(chars)}

    def sigma_qk(text):
        k = np.array([ch.isdigit() for ch in text], dtype=float)[:, None, None] * np.ones((1, 4, 4))
        return np.ones((len(text), 4, 4)), k
    monkeypatch.setattr(ev, "last_layer_sigma", lambda params, cfg, stoi: sigma_qk)
    cfg = infini.Config(vocab_size=len(chars), n_layer=1, n_head=4, d_model=16, segment_len=64)
    r = ev.multikey_read(None, cfg, stoi, VAL_TEXT, n_prompts=5, length=700)
    assert r["digits"] == [1.0] * 4 and r["shared"] == r["name"] == [0.0] * 4
    assert all(2 * 4 <= w <= 2 * 5 * 4 for w in r["asked"] + r["other"])  # 2 copies of 1-5 digits, D = 4


def test_name_probe_reads_the_name_where_it_is_and_not_where_it_is_not(monkeypatch):
    """Planted vectors: the residual at the answer's " " and the key of every digit right after
    " is " are the name's one-hot; every query is the same, and the residual elsewhere zero.
    The read-out names the name from the first two and not from the others."""
    chars = task.haystack_chars(TRAIN_TEXT, VAL_TEXT)
    stoi = {ch: i for i, ch in enumerate(chars)}

    def sigma_qk(text):
        name = next(nm for nm in task.NAMES if f"pass key of {nm}?" in text)
        onehot = np.eye(len(task.NAMES))[task.NAMES.index(name)]
        h, k = np.zeros((len(text), 44)), np.zeros((len(text), 4, 11))
        h[text.rindex(" ")] = onehot                                       # the answer " 12345." starts there
        for t in range(4, len(text)):
            if text[t - 4:t] == " is " and text[t].isdigit():
                k[t] = onehot.reshape(4, 11)
        return h, np.ones((len(text), 4, 11)), k
    monkeypatch.setattr(ev, "last_layer_sigma", lambda params, cfg, stoi, with_input: sigma_qk)
    cfg = infini.Config(vocab_size=len(chars), n_layer=1, n_head=4, d_model=16, segment_len=64)
    r = ev.name_probe(None, cfg, stoi, VAL_TEXT, n_prompts=300)
    assert r["residual"] == r["key"] == 100.0 and r["chance"] == 100 / 44
    assert r["query"] < 15 and r["digit_residual"] < 15                  # no name there


def test_haystack_and_multikey_models_train_and_evaluate_end_to_end(tmp_path):
    data = str(write_plays(tmp_path / "data"))
    c = tiny_settings(tmp_path, memory="linear", filler="plays", data_dir=data, eval_lengths="600")
    assert pk.main(c) == 0
    out = json.loads((tmp_path / "haystack-linear" / "results.json").read_text())
    assert out["filler"] == "plays" and set(out["results"]["600"]) == {"start", "middle", "end"}
    assert set(out["template_results"]) == {"600"}                      # the same model on the filler line
    params, cfg, meta = pk.load_model(str(tmp_path / "haystack-linear" / "model.npz"))
    assert meta["tokenizer"]["itos"] == task.haystack_chars(TRAIN_TEXT, VAL_TEXT) and meta["filler"] == "plays"
    assert cfg.vocab_size == len(task.haystack_chars(TRAIN_TEXT, VAL_TEXT))
    with pytest.raises(infini_checkpoint().CheckpointError, match="another vocabulary"):
        pk.load_model(str(tmp_path / "haystack-linear" / "model.npz"), task=pk.Task(task.CHARS))
    assert pk.main(dict(c, memory="delta")) == 0                        # delta starts from haystack-linear
    assert pk.main(dict(c, memory="all", max_keys=2, eval_keys="1,2", eval_lengths="900")) == 0
    for mode in ("none", "linear", "delta"):
        out = json.loads((tmp_path / f"multikey-{mode}" / "results.json").read_text())
        assert set(out["multikey"]) == {"1", "2"} and out["prompts_per_cell"] == 2 and out["lengths"] == [900]
        assert set(out["asked_digits"]["2"]) == set(out["other_digits"]["2"]) == {"900"}
        assert ("read" in out) == ("names" in out) == (mode != "none")


def test_delta_on_the_plays_tunes_without_far_fill(tmp_path, capsys):
    """far_fill's delta memory stands for a repeated filler line: on the plays delta trains as with far_fill=0."""
    c = tiny_settings(tmp_path, memory="linear", filler="plays", data_dir=str(write_plays(tmp_path / "data")),
                      eval_lengths="600")
    assert pk.main(c) == 0
    path = tmp_path / "haystack-delta" / "ckpt.npz"
    assert pk.main(dict(c, memory="delta")) == 0 and "far_fill off" in capsys.readouterr().out
    default, _, meta = infini_checkpoint().load_checkpoint(str(path))
    assert meta["config"]["far_fill"] == 0
    assert pk.main(dict(c, memory="delta", far_fill=0, overwrite=True)) == 0
    off, _, _ = infini_checkpoint().load_checkpoint(str(path))
    assert all(np.array_equal(default[k], off[k]) for k in off)


def test_the_shipped_models_of_a_filler_are_the_ones_evaluated(tmp_path, monkeypatch, capsys):
    """python passkey.py --filler=plays: every haystack model in passkey_ckpt/, the others named as skipped."""
    import shutil
    c = tiny_settings(tmp_path, memory="linear", filler="plays", data_dir=str(write_plays(tmp_path / "data")),
                      eval_lengths="600")
    assert pk.main(c) == 0
    (tmp_path / "shipped").mkdir()
    shutil.copy(tmp_path / "haystack-linear" / "model.npz", tmp_path / "shipped" / "haystack-linear.npz")
    monkeypatch.setattr(pk, "SHIPPED", str(tmp_path / "shipped"))
    capsys.readouterr()
    assert pk.main(dict(c, memory="all", init_from="shipped", out_dir=str(tmp_path / "eval"))) == 0
    out = capsys.readouterr().out
    assert "no shipped haystack-none.npz" in out and "no shipped haystack-delta.npz" in out
    assert os.listdir(tmp_path / "eval") == ["haystack-linear"]
    monkeypatch.setattr(pk, "SHIPPED", str(tmp_path / "nothing"))
    assert pk.main(dict(c, memory="all", init_from="shipped")) == 1     # none shipped: run_mode's one-line error


def infini_checkpoint():
    import checkpoint
    return checkpoint


@pytest.mark.parametrize("arg, message", [
    ("--max_keys=2", "needs --filler=plays"),
    ("--filler=words", "--filler must be one of"),
    ("--eval_keys=0,40", "in 1..32"),
    ("--template_frac=2", "fraction"),
])
def test_bad_haystack_settings_are_one_line_errors(arg, message):
    r = scripts.run("passkey.py", arg, "--filler=plays" if arg == "--eval_keys=0,40" else "--memory=none")
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr
