"""
passkey_task.py: the passkey retrieval task (paper, Appendix B; SPEC.md, "The passkey task").

A prompt hides a random number (the pass key, 1..50000) inside a long run of repeated filler
text and asks for it at the end. Character level; a prompt looks like this, one line per part:

    There is an important info hidden inside a lot of irrelevant text. Find it and ...
    The grass is green. The sky is blue. ... There and back again. The grass is ...   (x times)
    The pass key is 9054. Remember it. 9054 is the pass key.
    The grass is green. The sky is blue. ... There and back again. The grass is ...   (y times)
    What is the pass key? The pass key is

and the model must continue it with " 9054.". This file holds the task alone, as plain
functions of text and NumPy arrays (no model): the prompt and its characters, the scorer,
and the training batches. passkey.py trains and evaluates on it.

    import passkey_task
    prompt, answer = passkey_task.make_prompt(2000, 0.5, 9054)   # length, depth (0 start, 1 end), key
    passkey_task.is_correct(" 9054.", 9054)                      # True; " 90544" is wrong
"""
import re

import numpy as np

# -----------------------------------------------------------------------------
# the prompt (SPEC.md, "The passkey task")

INTRO = ("There is an important info hidden inside a lot of irrelevant text. "
         "Find it and memorize them. I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEY_LINE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
KEY_MIN, KEY_MAX = 1, 50000

# the characters of the task: every prompt and answer is written with these (id = index)
CHARS = sorted(set(INTRO + FILLER + KEY_LINE.format(key="0123456789") + QUESTION + "\n"))
STOI = {ch: i for i, ch in enumerate(CHARS)}
VOCAB_SIZE = len(CHARS)


def encode(text):
    return np.array([STOI[ch] for ch in text], dtype=np.int64)


def decode(ids):
    return "".join(CHARS[int(i)] for i in ids)


def filler_counts(length, key):
    """The number n = x + y of filler repeats for a prompt of at most `length` characters.

    Parts are joined by single newlines and the repeats of one filler line by single spaces,
    so every repeat adds exactly len(FILLER) + 1 = 90 characters (an empty filler line is
    left out, with its newline). n is the largest count whose prompt is not longer than
    `length`: the prompt is at most 89 characters shorter than asked, never longer.
    Returns None when even n = 0 does not fit.
    """
    base = prompt_length(0, 0, key)
    if length < base:
        return None
    return (length - base) // (len(FILLER) + 1)


def make_prompt(length, depth, key):
    """The passkey prompt of at most `length` characters with `key` at `depth` (0 start, 1 end).

    With n = filler_counts(length, key) repeats in all, x = round(depth * n) go before the
    key line and y = n - x after it: depth 0 puts the key line right after the intro,
    depth 1 right before the question. Returns (prompt text, answer text " <key>.").
    """
    if not (KEY_MIN <= key <= KEY_MAX):
        raise ValueError(f"the key must be in {KEY_MIN}..{KEY_MAX}, got {key}")
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"the depth must be in [0, 1], got {depth}")
    x, y = prompt_counts(length, depth, key)
    return make_prompt_parts(x, y, key), f" {key}."


def prompt_counts(length, depth, key):
    """(x, y): the filler repeats before and after the key line (see make_prompt)."""
    n = filler_counts(length, key)
    if n is None:
        raise ValueError(f"a prompt with key {key} needs at least "
                         f"{len(make_prompt_parts(0, 0, key))} characters, asked for {length}")
    x = int(round(depth * n))
    return x, n - x


def make_prompt_parts(x, y, key):
    """The prompt with x filler repeats before the key line and y after it."""
    return "".join(prompt_pieces(x, y, key))


def prompt_pieces(x, y, key):
    """The same prompt as make_prompt_parts, in pieces of at most one sentence: a 1M-character
    prompt can be streamed without ever being held in memory whole."""
    def filler(n):                          # n repeats on one line, after a newline
        for i in range(n):
            yield (" " if i else "\n") + FILLER
    yield INTRO
    yield from filler(x)
    yield "\n" + KEY_LINE.format(key=key)
    yield from filler(y)
    yield "\n" + QUESTION


def prompt_length(x, y, key):
    """len(make_prompt_parts(x, y, key)), without building it: the three fixed parts, two
    newlines, and each filler repeat with its separator (a newline or a space)."""
    fixed = len(INTRO) + len(KEY_LINE.format(key=key)) + len(QUESTION) + 2
    return fixed + (x + y) * (len(FILLER) + 1)


def parse_answer(text):
    """The number a continuation gives: its leading run of digits after optional spaces
    (" 9054." -> 9054, " 90544" -> 90544), or None when it starts with no number."""
    m = re.match(r"\s*(\d+)", text)
    return int(m.group(1)) if m else None


def is_correct(text, key):
    """Exact match: the continuation's number is the key, no digit more, no digit less."""
    return parse_answer(text) == key


def digit_accuracy(text, key):
    """The share of the key's digits that the continuation has right, place by place."""
    got, want = text.lstrip(" "), str(key)
    return sum(a == b for a, b in zip(got, want)) / len(want)


# -----------------------------------------------------------------------------
# training batches: short prompts, the loss on the answer (and, lighter, on every other token)


def make_batch(rng, batch_size, n_max, ans_weight, lm_weight, shift_max=0, short_keys=0.0, key_last=0.0):
    """A batch of training prompts with their answers: idx, targets (B,T) and loss weights (B,T).

    All prompts of a batch share n = x + y filler repeats, drawn in 0..n_max; each has its
    own key (1..50000) and depth (0..1). Shorter rows (keys with fewer digits) are padded on
    the right with target -1: a causal model never sees the padding. The answer " 9054." and
    the key's second occurrence in its line ("Remember it. 9054 ") get weight ans_weight per
    character, every other character lm_weight (0: no loss there). With shift_max > 0 each
    prompt starts after 0..shift_max newlines (weight 0), so that the answer and the question
    meet every alignment in their segment, not only those of the training lengths. A fraction
    short_keys of the keys is drawn from 1000..9999 (4 digits) instead, and a fraction key_last
    of the prompts has depth 1 (x = n): the key line right before the question.
    """
    n = int(rng.integers(0, n_max + 1))
    rows = []
    for _ in range(batch_size):
        short = short_keys > 0 and rng.random() < short_keys
        key = int(rng.integers(1000, 10000)) if short else int(rng.integers(KEY_MIN, KEY_MAX + 1))
        last = key_last > 0 and rng.random() < key_last
        x = n if last else int(rng.integers(0, n + 1))                    # depth x / n, else uniform
        prompt, answer = make_prompt_parts(x, n - x, key), f" {key}."
        ids = encode(prompt + answer)
        w = np.full(len(ids) - 1, lm_weight, dtype=np.float32)            # w[t] weighs target ids[t+1]
        second = prompt.index(f". Remember it. {key} ") + len(". Remember it. ")
        w[second - 1:second + len(str(key))] = ans_weight                  # the key's second occurrence + " "
        w[len(prompt) - 1:] = ans_weight                                   # the answer " 9054."
        if shift_max > 0:
            s = int(rng.integers(0, shift_max + 1))
            ids = np.concatenate([np.full(s, STOI["\n"]), ids])
            w = np.concatenate([np.zeros(s, dtype=np.float32), w])
        rows.append((ids, w))
    T = max(len(ids) for ids, _ in rows) - 1
    idx = np.zeros((batch_size, T), dtype=np.int64)
    targets = np.full((batch_size, T), -1, dtype=np.int64)
    weights = np.zeros((batch_size, T), dtype=np.float32)
    for b, (ids, w) in enumerate(rows):
        t = len(ids) - 1
        idx[b, :t], targets[b, :t], weights[b, :t] = ids[:-1], ids[1:], w
        idx[b, t:] = STOI["\n"]
    return idx, targets, weights


def answer_mask(targets, weights):
    """(B,T) bool: the answer's characters " 9054." in a make_batch batch, the last run of
    positions with the largest weight in each row (the key's second occurrence, weighted
    alike, sits earlier in the prompt and is left out)."""
    valid = targets >= 0
    top = (weights >= weights.max()) & valid
    last = valid.sum(axis=1) - 1                                           # each row's last target
    mask = np.zeros_like(top)
    for b, t in enumerate(last):
        while t >= 0 and top[b, t]:
            mask[b, t] = True
            t -= 1
    return mask


def answer_accuracy(pred, targets, weights):
    """The share of the most weighted targets of a make_batch batch (the answer and the key's
    second occurrence) that pred (B,T), the predicted next characters, gets right."""
    ans = weights >= weights.max()
    return float(((pred == targets) & ans).sum() / ans.sum())

