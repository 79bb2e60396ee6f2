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

A real haystack (`haystack=` text) puts a passage of real text where the filler repeats
go, cut from a random point of that text and read on from there (from its start again at
its end), with the key line inserted at the asked depth: the prompt has the same parts
and the same length as with the filler line, but no period for the model to lean on.
passkey.py cuts it from the training plays for training and from the held-out plays for
the evaluation (load_plays).

    import passkey_task
    prompt, answer = passkey_task.make_prompt(2000, 0.5, 9054)   # length, depth (0 start, 1 end), key
    passkey_task.is_correct(" 9054.", 9054)                      # True; " 90544" is wrong
    train_text, val_text = passkey_task.load_plays("data/shakespeare_char")
    prompt, answer = passkey_task.make_prompt(2000, 0.5, 9054, haystack=val_text, start=123)
"""
import itertools
import os
import pickle
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
REPEAT = len(FILLER) + 1  # 90: the characters one filler repeat adds, with its separator

# the characters of the task: every prompt and answer is written with these (id = index)
CHARS = sorted(set(INTRO + FILLER + KEY_LINE.format(key="0123456789") + QUESTION + "\n"))
STOI = {ch: i for i, ch in enumerate(CHARS)}
VOCAB_SIZE = len(CHARS)


def encode(text, stoi=STOI):
    return np.array([stoi[ch] for ch in text], dtype=np.int64)


def decode(ids, chars=CHARS):
    return "".join(chars[int(i)] for i in ids)


def load_plays(data_dir):
    """-> (training text, held-out text): the plays of data/shakespeare_char, decoded. The
    held-out text is the four validation plays alone (data/plays.py: VAL_PLAYS), so an
    evaluation haystack is never from a training play. The vocabulary of a haystack model is
    haystack_chars(...) of both (the template's characters are among the plays')."""
    paths = [os.path.join(data_dir, name) for name in ("meta.pkl", "train.bin", "val.bin")]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"no {missing[0]}: prepare the plays first: python data/shakespeare_char/prepare.py")
    with open(paths[0], "rb") as f:
        itos = pickle.load(f)["itos"]
    chars = np.array([itos[i] for i in range(len(itos))])
    return tuple("".join(chars[np.fromfile(p, dtype=np.uint16)]) for p in paths[1:])


def haystack_chars(*texts):
    """The vocabulary of a model that reads these texts, the template and the multi-key
    lines with their names: sorted characters (for the plays, the plays' own 76)."""
    named = NAMED_KEY_LINE.format(name="", key="0123456789") + NAMED_QUESTION.format(name="") + "".join(NAMES)
    return sorted(set(CHARS).union(named, *map(set, texts)))


def passage(text, start, n):
    """n characters of text from position start on, read on from its start at its end."""
    start %= len(text)
    out = text[start:start + n]
    while len(out) < n:
        out += text[:n - len(out)]
    return out


def filler_counts(length, key):
    """The number n = x + y of filler repeats for a prompt of at most `length` characters.

    Parts are joined by single newlines and the repeats of one filler line by single spaces,
    so every repeat adds exactly REPEAT = len(FILLER) + 1 = 90 characters (an empty filler line is
    left out, with its newline). n is the largest count whose prompt is not longer than
    `length`: the prompt is at most 89 characters shorter than asked, never longer.
    Returns None when even n = 0 does not fit.
    """
    base = prompt_length(0, 0, key)
    if length < base:
        return None
    return (length - base) // REPEAT


def make_prompt(length, depth, key, haystack=None, start=0):
    """The passkey prompt of at most `length` characters with `key` at `depth` (0 start, 1 end).

    With n = filler_counts(length, key) repeats in all, x = round(depth * n) go before the
    key line and y = n - x after it: depth 0 puts the key line right after the intro,
    depth 1 right before the question. With a haystack text, the 90 characters of each
    repeat are real text instead, from haystack[start] on (prompt_pieces).
    Returns (prompt text, answer text " <key>.").
    """
    if not (KEY_MIN <= key <= KEY_MAX):
        raise ValueError(f"the key must be in {KEY_MIN}..{KEY_MAX}, got {key}")
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"the depth must be in [0, 1], got {depth}")
    x, y = prompt_counts(length, depth, key)
    return make_prompt_parts(x, y, key, haystack, start), f" {key}."


def prompt_counts(length, depth, key):
    """(x, y): the filler repeats before and after the key line (see make_prompt)."""
    n = filler_counts(length, key)
    if n is None:
        raise ValueError(f"a prompt with key {key} needs at least "
                         f"{len(make_prompt_parts(0, 0, key))} characters, asked for {length}")
    x = int(round(depth * n))
    return x, n - x


def make_prompt_parts(x, y, key, haystack=None, start=0):
    """The prompt with x filler repeats before the key line and y after it."""
    return "".join(prompt_pieces(x, y, key, haystack, start))


PIECE = 65536  # the longest piece of a real haystack that prompt_pieces yields at once


def prompt_pieces(x, y, key, haystack=None, start=0):
    """The same prompt as make_prompt_parts, in pieces of at most one sentence (or PIECE
    characters of a haystack): a 1M-character prompt can be streamed without ever being held
    in memory whole.

    haystack: real text for the filler. Its part of n repeats is a newline and REPEAT * n - 1
    characters of it, the same length as n filler repeats; the part after the key line
    reads on where the part before it stopped, so the key line sits inside one passage
    from haystack[start] on, as a needle inserted into a document."""
    return lines_pieces([x, y], [KEY_LINE.format(key=key)], QUESTION, haystack, start)


def lines_pieces(counts, lines, question, haystack=None, start=0):
    """The pieces of a prompt with len(lines) key lines: the intro, counts[0] filler repeats,
    the first line, counts[1] repeats, ..., the last line, counts[-1] repeats, the question.
    Every part starts on a new line; a real haystack reads on from part to part."""
    def filler(n):                          # n repeats on one line, after a newline
        for i in range(n):
            yield (" " if i else "\n") + FILLER

    def real(n, at):                        # the same length of real text, from haystack[at] on
        if n:
            yield "\n"
            for i in range(0, REPEAT * n - 1, PIECE):
                yield passage(haystack, at + i, min(PIECE, REPEAT * n - 1 - i))
    yield INTRO
    at = start
    for n, line in zip(counts, lines + [question]):
        yield from filler(n) if haystack is None else real(n, at)
        at += max(0, REPEAT * n - 1)
        yield "\n" + line


def prompt_length(x, y, key):
    """len(make_prompt_parts(x, y, key)), without building it: the three fixed parts, two
    newlines, and each filler repeat with its separator (a newline or a space)."""
    fixed = len(INTRO) + len(KEY_LINE.format(key=key)) + len(QUESTION) + 2
    return fixed + (x + y) * REPEAT


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


def digit_sources(text, key, others):
    """Where the continuation's number takes its digits from, place by place (multi-key
    retrieval): -> (digits, those equal to the asked key's digit there, those equal to some
    other key's digit there). A read that mixes two keys scores about half on each."""
    got = parse_answer(text)
    got = "" if got is None else str(got)
    asked = sum(i < len(str(key)) and str(key)[i] == ch for i, ch in enumerate(got))
    other = sum(any(i < len(str(o)) and str(o)[i] == ch for o in others) for i, ch in enumerate(got))
    return len(got), asked, other


# -----------------------------------------------------------------------------
# multi-key retrieval (RULER's multi-key needle): k key lines, each with its own name, and
# the question asks for one of them

NAMED_KEY_LINE = "The pass key of {name} is {key}. Remember it. {key} is the pass key of {name}."
NAMED_QUESTION = "What is the pass key of {name}? The pass key of {name} is"
NAMES = ("ADAM", "ARIEL", "BANQUO", "BELCH", "BIANCA", "BOTTOM", "BRUTUS", "CASSIO", "CELIA", "CLEON",
         "CORIN", "DROMIO", "DUNCAN", "EDGAR", "EGEUS", "EMILIA", "FESTE", "FLUTE", "GOWER", "HAMLET",
         "HELENA", "HERO", "IAGO", "IMOGEN", "JAQUES", "JULIET", "KENT", "LEAR", "MACBETH", "MARIA",
         "MIRANDA", "OBERON", "OLIVIA", "OTHELLO", "PAULINA", "PUCK", "REGAN", "ROMEO", "SNOUT", "TIMON",
         "TITANIA", "TYBALT", "VIOLA", "YORICK")  # 44 names of the plays' characters; a prompt's are distinct
MAX_KEYS = 32  # the most key lines a multi-key prompt has (evaluation: 1..32)


def multikey_prompt(rng, length, k, haystack=None, start=0, n=None):
    """A multi-key prompt of exactly `length` characters: k key lines with distinct names and
    keys at depths drawn uniformly, and the question for one of them, drawn too. The n filler
    repeats that fit are cut into k + 1 parts at k uniform points, and leading newlines (as
    training's shift_max) make up the rest of the length. Given n instead of a length: n
    repeats and no leading newlines. -> (prompt pieces, answer " <key>.", the key asked, the depth of its line
    in 0..1, the k keys in the order of their lines)."""
    if not 1 <= k <= MAX_KEYS:
        raise ValueError(f"a multi-key prompt has 1..{MAX_KEYS} key lines, got {k}")
    names = rng.choice(len(NAMES), size=k, replace=False)
    keys = [int(key) for key in rng.integers(KEY_MIN, KEY_MAX + 1, size=k)]
    ask = int(rng.integers(k))
    lines = [NAMED_KEY_LINE.format(name=NAMES[i], key=key) for i, key in zip(names, keys)]
    question = NAMED_QUESTION.format(name=NAMES[names[ask]])
    pad = 0
    if n is None:
        fixed = len(INTRO) + sum(map(len, lines)) + len(question) + k + 1  # k + 1 newlines
        if length < fixed:
            raise ValueError(f"{k} key lines need at least {fixed} characters, asked for {length}")
        n, pad = divmod(length - fixed, REPEAT)
    cuts = np.sort(rng.integers(0, n + 1, size=k))
    counts = np.diff(np.concatenate([[0], cuts, [n]])).tolist()
    depth = float(cuts[ask] / n) if n else 0.0
    pieces = itertools.chain(["\n" * pad], lines_pieces(counts, lines, question, haystack, start))
    return pieces, f" {keys[ask]}.", keys[ask], depth, keys


# -----------------------------------------------------------------------------
# training batches: short prompts, the loss on the answer (and, lighter, on every other token)


def make_batch(rng, batch_size, n_max, ans_weight, lm_weight, shift_max=0, short_keys=0.0, key_last=0.0,
               haystack=None, template_frac=0.0, stoi=STOI):
    """A batch of training prompts with their answers: idx, targets (B,T) and loss weights (B,T).

    All prompts of a batch share n = x + y filler repeats, drawn in 0..n_max; each has its
    own key (1..50000) and depth (0..1). Shorter rows (keys with fewer digits) are padded on
    the right with target -1: a causal model never sees the padding. The answer " 9054." and
    the key's second occurrence in its line ("Remember it. 9054 ") get weight ans_weight per
    character, every other character lm_weight (0: no loss there). With shift_max > 0 each
    prompt starts after 0..shift_max newlines (weight 0), so that the answer and the question
    meet every alignment in their segment, not only those of the training lengths. A fraction
    short_keys of the keys is drawn from 1000..9999 (4 digits) instead, and a fraction key_last
    of the prompts has depth 1 (x = n): the key line right before the question. With a
    haystack text, each prompt's filler is a passage of it from a random point, except for a
    fraction template_frac of the prompts, which keep the filler line; stoi encodes them.
    """
    n = int(rng.integers(0, n_max + 1))
    rows = []
    for _ in range(batch_size):
        short = short_keys > 0 and rng.random() < short_keys
        key = int(rng.integers(1000, 10000)) if short else int(rng.integers(KEY_MIN, KEY_MAX + 1))
        last = key_last > 0 and rng.random() < key_last
        x = n if last else int(rng.integers(0, n + 1))                    # depth x / n, else uniform
        text = haystack
        if haystack is not None and rng.random() < template_frac:
            text = None
        start = 0 if text is None else int(rng.integers(len(text)))
        prompt, answer = make_prompt_parts(x, n - x, key, text, start), f" {key}."
        rows.append(weigh_row(rng, prompt, answer, [key], ans_weight, lm_weight, shift_max, stoi))
    return stack_rows(rows, stoi)


def make_multikey_batch(rng, batch_size, n_max, k_max, ans_weight, lm_weight, shift_max=0, haystack=None, stoi=STOI):
    """A batch of multi-key training prompts (multikey_prompt), as make_batch's: each has
    1..k_max key lines and n filler repeats, n drawn in 0..n_max per prompt; the answer and
    the second occurrence of every line's key carry ans_weight."""
    rows = []
    for _ in range(batch_size):
        k = int(rng.integers(1, k_max + 1))
        n = int(rng.integers(0, n_max + 1))
        start = 0 if haystack is None else int(rng.integers(len(haystack)))
        pieces, answer, _, _, keys = multikey_prompt(rng, None, k, haystack, start, n=n)
        rows.append(weigh_row(rng, "".join(pieces), answer, keys, ans_weight, lm_weight, shift_max, stoi))
    return stack_rows(rows, stoi)


def weigh_row(rng, prompt, answer, keys, ans_weight, lm_weight, shift_max, stoi):
    """One training row: (ids, w) of prompt + answer, w[t] the loss weight of target ids[t+1]:
    ans_weight on the answer and on each key's second occurrence in its line ("Remember it.
    9054 "), lm_weight elsewhere, after 0..shift_max leading newlines of weight 0."""
    ids = encode(prompt + answer, stoi)
    w = np.full(len(ids) - 1, lm_weight, dtype=np.float32)
    at = 0
    for key in keys:                                                       # the key lines, in order
        at = prompt.index(f". Remember it. {key} ", at) + len(". Remember it. ")
        w[at - 1:at + len(str(key))] = ans_weight                          # the key's second occurrence + " "
    w[len(prompt) - 1:] = ans_weight                                       # the answer " 9054."
    if shift_max > 0:
        s = int(rng.integers(0, shift_max + 1))
        ids = np.concatenate([np.full(s, stoi["\n"]), ids])
        w = np.concatenate([np.zeros(s, dtype=np.float32), w])
    return ids, w


def stack_rows(rows, stoi):
    """[(ids, w)] -> idx, targets, weights (B,T), shorter rows padded on the right with target -1."""
    T = max(len(ids) for ids, _ in rows) - 1
    idx = np.full((len(rows), T), stoi["\n"], dtype=np.int64)
    targets = np.full((len(rows), T), -1, dtype=np.int64)
    weights = np.zeros((len(rows), T), dtype=np.float32)
    for b, (ids, w) in enumerate(rows):
        t = len(ids) - 1
        idx[b, :t], targets[b, :t], weights[b, :t] = ids[:-1], ids[1:], w
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

