"""
passkey_eval.py: the passkey evaluation, streamed through the model's state, and its report.

A prompt of any length (a million characters or more) is read in chunks through
infini.forward_stream, so the memory used stays bounded: the state holds M and z per layer
and the keys and values of one unfinished segment, never the prompt. evaluate() scores
greedy continuations by exact match (passkey_task.is_correct) for every length and key
depth; offset_accuracy() scores the answer's characters teacher forced, by where the
character read sits in its segment. table() and heatmap() report the results.
"""
import itertools
import re

import numpy as np

import infini
from passkey_task import (CHARS, KEY_LINE, KEY_MAX, KEY_MIN, NAMED_KEY_LINE, NAMES, STOI, answer_mask, decode,
                          digit_accuracy, digit_sources, encode, is_correct, make_batch, multikey_prompt, prompt_counts,
                          prompt_length, prompt_pieces)

# -----------------------------------------------------------------------------
# evaluation through the streaming state: bounded memory at any length

MAX_NEW = 7  # " " + 5 digits + one more: a key with a digit too many is seen and counted wrong


def text_chunks(pieces, size):
    """Cut a stream of text pieces into chunks of `size` characters (the last may be shorter)."""
    buf = ""
    for piece in pieces:
        buf += piece
        whole = len(buf) // size * size                                    # one cut per piece, not per
        for i in range(0, whole, size):                                    #   chunk: a long string is
            yield buf[i:i + size]                                          #   copied once, not per chunk
        buf = buf[whole:]
    if buf:
        yield buf


def generate_batch(params, cfg, prompts, chunk=512, max_new=MAX_NEW, chars=CHARS):
    """Greedy continuations of equally long prompts, all streamed at once in one state.

    prompts: list of B prompts of the same length, each a string or an iterable of text
    pieces (prompt_pieces), so that no prompt is ever held whole. They are fed in chunks of
    `chunk` characters (forward_stream cuts them at segment boundaries), then max_new
    characters are generated one at a time. chars: the model's vocabulary (id = index), the
    template's by default. Returns B strings.
    """
    xp = infini.get_array_module(params["wte"])
    B = len(prompts)
    table = np.zeros(0x10000, dtype=np.uint8)
    for i, ch in enumerate(chars):
        table[ord(ch)] = i
    state = infini.init_state(params, cfg, B)
    streams = [text_chunks([p] if isinstance(p, str) else p, chunk) for p in prompts]
    for pieces in itertools.zip_longest(*streams, fillvalue=""):          # one chunk of every prompt
        if any(len(s) != len(pieces[0]) for s in pieces):
            raise ValueError("a streamed batch needs prompts of one length")
        ids = table[np.frombuffer("".join(pieces).encode("utf-16-le"), dtype=np.uint16)].reshape(B, -1)
        logits, state = infini.forward_stream(params, xp.asarray(ids.astype(np.int64)), state, cfg)
    out = []
    for _ in range(max_new):
        nxt = logits[:, -1].argmax(axis=-1)                                # (B,) greedy
        out.append(infini.to_numpy(nxt))
        logits, state = infini.forward_stream(params, nxt[:, None], state, cfg)
    gen = np.stack(out, axis=1)                                            # (B,max_new)
    return [decode(row, chars) for row in gen]



def evaluate(params, cfg, lengths, depths, n_per_depth, seed=0, batch_size=32, chunk=512, progress=None,
             haystack=None, chars=CHARS):
    """Exact-match accuracy (%) and per-digit accuracy (%) for every length and depth.

    Each (length, depth) gets n_per_depth random keys drawn from seed and the length. The
    prompts of one length with the same number of key digits have the same number of
    characters whatever their depth, so they are streamed together in batches. With a
    haystack text each prompt's filler is a passage of it from its own random start
    (passkey_task.prompt_pieces); chars is the model's vocabulary.
    Returns {length: {depth: {"exact": %, "digits": %, "samples": [...]}}}.
    """
    results = {}
    for length in lengths:
        rng = np.random.default_rng([seed, length])
        keys = rng.integers(KEY_MIN, KEY_MAX + 1, size=(len(depths), n_per_depth))
        starts = rng.integers(len(haystack) if haystack else 1, size=keys.shape)  # (each its own passage)
        jobs = sorted(((len(str(k)), di, int(k), int(s)) for di, (row, srow) in enumerate(zip(keys, starts))
                       for k, s in zip(row, srow)))
        hits = {di: [] for di in range(len(depths))}
        digits = {di: [] for di in range(len(depths))}
        samples = {di: [] for di in range(len(depths))}
        groups = {}
        for nd, di, k, s in jobs:
            groups.setdefault(nd, []).append((di, k, s))
        for nd, group in groups.items():
            for b0 in range(0, len(group), batch_size):
                batch = group[b0:b0 + batch_size]
                counts = [prompt_counts(length, depths[di], k) + (k,) for di, k, _ in batch]
                prompts = [prompt_pieces(*xyk, haystack, s)                # streamed, never built whole
                           for xyk, (_, _, s) in zip(counts, batch)]
                for (di, k, _), text in zip(batch, generate_batch(params, cfg, prompts, chunk, chars=chars)):
                    hits[di].append(is_correct(text, k))
                    digits[di].append(digit_accuracy(text, k))
                    if len(samples[di]) < 3:
                        samples[di].append(f"{k} -> {text!r}")
                if progress is not None:
                    progress(len(batch) * (prompt_length(*counts[0]) + MAX_NEW))
        results[length] = {depths[di]: {"exact": 100.0 * float(np.mean(hits[di])),
                                        "digits": 100.0 * float(np.mean(digits[di])),
                                        "samples": samples[di]} for di in range(len(depths))}
    return results


def evaluate_multikey(params, cfg, ks, lengths, n_prompts, seed=0, batch_size=32, chunk=512, progress=None,
                      haystack=None, chars=CHARS):
    """Exact-match accuracy (%) of multi-key retrieval for every number of key lines k and length.

    Each (k, length) gets n_prompts prompts (passkey_task.multikey_prompt: k named key lines at
    random depths, the question for one of them), drawn from seed, k and the length, each
    exactly `length` characters long, so that a batch streams together. A cell whose k lines do not fit in the length is None.
    Returns {k: {length: {"exact": % or None, "samples": [...], "asked_digits": %, "other_digits": %}}}:
    the answers' digits equal to the asked key's at their place, and to another line's key's
    (passkey_task.digit_sources).
    """
    results = {}
    for k in ks:
        results[k] = {}
        for length in lengths:
            rng = np.random.default_rng([seed, k, length])
            jobs = []
            for _ in range(n_prompts):
                start = int(rng.integers(len(haystack))) if haystack else 0
                try:
                    pieces, _, key, _, keys = multikey_prompt(rng, length, k, haystack, start)
                except ValueError:                                         # k lines longer than the prompt
                    break
                others = list(keys)
                others.remove(key)                                          # the other lines' keys
                jobs.append((pieces, key, others))
            if len(jobs) < n_prompts:
                results[k][length] = {"exact": None, "samples": []}
                continue
            hits, samples, sources = [], [], np.zeros(3)
            for b0 in range(0, n_prompts, batch_size):
                batch = jobs[b0:b0 + batch_size]
                prompts = [pieces for pieces, _, _ in batch]
                for (_, key, others), text in zip(batch, generate_batch(params, cfg, prompts, chunk, chars=chars)):
                    hits.append(is_correct(text, key))
                    sources += digit_sources(text, key, others)
                    if len(samples) < 3:
                        samples.append(f"{key} -> {text!r}")
                if progress is not None:
                    progress(len(batch) * (length + MAX_NEW))
            digits = max(sources[0], 1)
            results[k][length] = {"exact": 100.0 * float(np.mean(hits)), "samples": samples,
                                  "asked_digits": 100.0 * sources[1] / digits, "other_digits": 100.0 * sources[2] / digits}
    return results


def greedy_predictions(params, cfg, idx, chunk=512):
    """(B,T) the likeliest next token after each position of idx (B,T), streamed through the
    state in chunks (the memory stays bounded, as in evaluate)."""
    xp = infini.get_array_module(params["wte"])
    state = infini.init_state(params, cfg, len(idx))
    pred = []
    for t0 in range(0, idx.shape[1], chunk):
        logits, state = infini.forward_stream(params, xp.asarray(idx[:, t0:t0 + chunk]), state, cfg)
        pred.append(infini.to_numpy(logits.argmax(axis=-1)))
    return np.concatenate(pred, axis=1)


def offset_accuracy(params, cfg, n_max, batches=40, batch_size=16, seed=0, haystack=None, stoi=STOI):
    """Teacher-forced accuracy (%) of the answer's characters, by the position in its segment
    of the character the model reads when it predicts each (0..segment_len-1), on training
    prompts of up to n_max filler repeats, each after 0..segment_len-1 newlines (so that the
    answer meets every position). A character at position 0 or 1 sees at most two characters
    through local attention: the rest must come from the memory. haystack, stoi: a real
    haystack and the model's vocabulary (make_batch). -> (accuracy list, count list), one
    entry per position (None where no answer character fell)."""
    rng = np.random.default_rng(seed)
    N = cfg.segment_len
    hits, counts = np.zeros(N), np.zeros(N)
    for _ in range(batches):
        idx, targets, weights = make_batch(rng, batch_size, n_max, 1.0, 0.0, N - 1, haystack=haystack, stoi=stoi)
        pred = greedy_predictions(params, cfg, idx)
        b, t = np.nonzero(answer_mask(targets, weights))
        np.add.at(counts, t % N, 1)
        np.add.at(hits, t % N, pred[b, t] == targets[b, t])
    acc = [100.0 * h / n if n else None for h, n in zip(hits, counts)]
    return acc, counts.astype(int).tolist()



def last_layer_sigma(params, cfg, stoi, with_input=False):
    """text -> sigma(q), sigma(k) of the last layer, (T,H,D) each, from one forward pass
    (with_input: and first the layer's attention input, the normed residual, (T,C))."""
    xp = infini.get_array_module(params["wte"])
    H, D, last = cfg.n_head, cfg.head_size, cfg.n_layer - 1
    seen = {}

    def forward(h, p, l, c):
        out, cache = infini.attention_forward(h, p, l, c)
        if l == last:
            seen["h"], seen["q"], seen["k"] = h, cache["q"], cache["k"]
        return out, cache

    def sigma_qk(s):
        infini.model_forward(params, xp.asarray(encode(s, stoi))[None], cfg, (forward, None))
        out = [infini.to_numpy(infini.sigma_forward(seen[n][0].reshape(-1, H, D))[0]) for n in ("q", "k")]
        return [infini.to_numpy(seen["h"][0])] + out if with_input else out
    return sigma_qk


def named_lines(prompt, keys):
    """The named key lines of a multi-key prompt, in the order of keys: [(key, name, where the line starts)]."""
    found = []
    for key in keys:
        name = next(nm for nm in NAMES if NAMED_KEY_LINE.format(name=nm, key=key) in prompt)
        found.append((key, name, prompt.index(NAMED_KEY_LINE.format(name=name, key=key))))
    return found


def name_probe(params, cfg, stoi, haystack=None, n_prompts=440, seed=0):
    """Does the name reach the memory's keys and queries? In prompts of one named key line and
    its question (multikey_prompt with k = 1: a random name, 0-2 filler repeats before), a
    linear read-out (ridge regression onto the 44 names, fitted on two thirds of the prompts)
    names the name from the last layer's vectors, and this is its accuracy on the other third:
    at the query that reads the answer's first digit, from the layer's input (the residual) and
    from sigma(q); at the line's first digit, the first copy's, 4 characters after the name,
    from sigma(k) and from the layer's input. A query that does not carry the name cannot pick
    its line, nor a key without it be picked.
    -> {"residual": %, "query": %, "key": %, "digit_residual": %, "chance": %}."""
    sigma_qk, rng = last_layer_sigma(params, cfg, stoi, with_input=True), np.random.default_rng(seed)
    rows, labels = {"residual": [], "query": [], "key": [], "digit_residual": []}, []
    for _ in range(n_prompts):
        start = int(rng.integers(len(haystack))) if haystack else 0
        pieces, answer, key, _, _ = multikey_prompt(rng, None, 1, haystack, start, n=int(rng.integers(0, 3)))
        prompt = "".join(pieces)
        [(_, name, at)] = named_lines(prompt, [key])
        h, sq, sk = sigma_qk(prompt + answer)
        digit = at + NAMED_KEY_LINE.format(name=name, key=key).index(str(key))  # the first copy's first digit
        rows["residual"].append(h[len(prompt)])                             # the answer's " " reads digit 1
        rows["query"].append(sq[len(prompt)].reshape(-1))
        rows["key"].append(sk[digit].reshape(-1))
        rows["digit_residual"].append(h[digit])
        labels.append(NAMES.index(name))
    labels = np.asarray(labels)
    fit, Y = 2 * n_prompts // 3, np.eye(len(NAMES))[labels]
    out = {}
    for part, X in rows.items():
        X = np.concatenate([np.asarray(X, dtype=np.float64), np.ones((n_prompts, 1))], axis=1)
        W = np.linalg.solve(X[:fit].T @ X[:fit] + 1e-2 * np.eye(X.shape[1]), X[:fit].T @ Y[:fit])
        out[part] = 100.0 * float(np.mean(np.argmax(X[fit:] @ W, axis=1) == labels[fit:]))
    out["chance"] = 100.0 / len(NAMES)
    return out


def multikey_read(params, cfg, stoi, haystack=None, n_prompts=30, length=None, seed=0):
    """Where the answer's memory read weighs in prompts of two named key lines, head by head:
    each line's weight sigma(q) . sigma(k_t) summed over its characters (the queries reading the
    answer, averaged), the asked line's and the other's, and the asked line's weight split into
    its parts: the words every line shares, the name, the digits. Only prompts whose two lines
    lie segments before the question's, where the memory alone reads them (length: by default
    3,000 characters, or 4 segments if longer, so that most prompts qualify).
    -> {"asked": [H], "other": [H], "shared": [H], "name": [H], "digits": [H]} (the parts as shares)."""
    sigma_qk, rng = last_layer_sigma(params, cfg, stoi), np.random.default_rng(seed)
    length = length or max(3000, 4 * cfg.segment_len)
    sums = {w: np.zeros(cfg.n_head) for w in ("asked", "other", "shared", "name", "digits")}
    template = re.split(r"(\{name\}|\{key\})", NAMED_KEY_LINE)          # the shared words and the slots
    done = 0
    while done < n_prompts:
        start = int(rng.integers(len(haystack))) if haystack else 0
        pieces, answer, asked, _, keys = multikey_prompt(rng, length, 2, haystack, start)
        prompt = "".join(pieces)
        lines = named_lines(prompt, keys)
        end = max(at + len(NAMED_KEY_LINE.format(name=name, key=key)) for key, name, at in lines)
        if end > (len(prompt) - 1) // cfg.segment_len * cfg.segment_len:
            continue                                                       # a line the local attention reads
        sq, sk = sigma_qk(prompt + answer)
        q = sq[len(prompt) - 1:len(prompt) + len(answer) - 1].mean(axis=0)  # (H,D)
        for key, name, at in lines:
            for part in template:
                text = {"{name}": name, "{key}": str(key)}.get(part, part)
                w = (sk[at:at + len(text)] * q).sum(-1).sum(0)            # (H,)
                sums["asked" if key == asked else "other"] += w
                if key == asked:
                    sums["name" if part == "{name}" else "digits" if part == "{key}" else "shared"] += w
                at += len(text)
        done += 1
    total = sums["shared"] + sums["name"] + sums["digits"]
    return {w: (v / (done if w in ("asked", "other") else total)).tolist() for w, v in sums.items()}


def dilution(params, cfg, text, stoi=STOI, n_prompts=10, length=1452, seed=0, chunk=8192, haystack=None):
    """What the haystack does to the answer's read in the last layer, head by head.

    The read is sigma(q) M / sigma(q) z; under the linear rule it is a weighted average of
    every value written, where each character t before the answer's segment weighs
    sigma(q) . sigma(k_t) (under the delta rule that is its part of the normaliser sigma(q) z,
    which grows the same way). For the queries that read the answer (the prompt's last
    character and the answer's, averaged over n_prompts prompts of `length` characters with
    the key line at the start), this measures the key line's weight and the haystack's weight
    per character (over `text`, in chunks of whole segments), so that the key line's share of
    the weights at L characters is key / (key + L * per_char); and which character of the
    haystack carries most of its weight. The share measures the dilution, not the answer: a
    model whose every character writes can still read a key whose share is under 0.001, if
    its value stands out (docs/passkey.md, "A real haystack"). The keys of the last layer are
    exact when every earlier layer's memory is closed (passkey.py's recipe: they depend on the
    local text only); otherwise, reading `text` in chunks without the memory, they are an
    estimate. haystack: the text the prompts' filler is cut from (None: the filler line).
    -> [{"key": float, "per_char": float, "top_char": str, "top_share": float}] per head.
    """
    H = cfg.n_head
    chunk = max(1, chunk // cfg.segment_len) * cfg.segment_len             # whole segments, as in one pass
    sigma_qk = last_layer_sigma(params, cfg, stoi)
    rng = np.random.default_rng(seed)
    queries, key_parts = [], []
    for _ in range(n_prompts):
        key = int(rng.integers(10000, KEY_MAX + 1))
        start = int(rng.integers(len(haystack))) if haystack else 0
        x, y = prompt_counts(length, 0.0, key)
        prompt = "".join(prompt_pieces(x, y, key, haystack, start))
        answer = f" {key}."
        sq, sk = sigma_qk(prompt + answer)
        T = len(prompt)
        q = sq[T - 1:T + len(answer) - 1].mean(axis=0)                     # (H,D): the queries reading the answer
        line = prompt.index(KEY_LINE.format(key=key))
        queries.append(q)
        key_parts.append((q * sk[line:line + len(KEY_LINE.format(key=key))].sum(axis=0)).sum(-1))  # (H,)
    q = np.mean(queries, axis=0)
    weights = np.concatenate([(sigma_qk(text[i:i + chunk])[1] * q).sum(-1)  # (len(text),H): each character's weight
                              for i in range(0, len(text), chunk)])
    ids = encode(text, stoi)
    out = []
    for h in range(H):
        by_char = np.bincount(ids, weights=weights[:, h], minlength=len(stoi))
        top = int(by_char.argmax())
        out.append({"key": float(np.mean([kp[h] for kp in key_parts])), "per_char": float(weights[:, h].mean()),
                    "top_char": next(ch for ch, i in stoi.items() if i == top),
                    "top_share": float(by_char[top] / max(by_char.sum(), 1e-30))})
    return out


def describe_dilution(heads, lengths=(46464, 1000000)):
    """One line per head: the key line's share of the read's weights at each length, and the
    haystack character that weighs most."""
    lines = []
    for h, d in enumerate(heads):
        shares = ", ".join(f"{d['key'] / (d['key'] + n * d['per_char']):.3f} at {n:,}" for n in lengths)
        lines.append(f"head {h}: key line's share {shares}; {d['top_char']!r} carries {100 * d['top_share']:.0f}% "
                     f"of the haystack's weight")
    return lines


# -----------------------------------------------------------------------------
# reporting: the paper-style table and a depth x length heat-map

NAMED_DEPTHS = {"start": 0.0, "middle": 0.5, "end": 1.0}


def table(rows, lengths):
    """Markdown table: one row per memory, one column per length, 'start/middle/end' in %."""
    head = "| memory | " + " | ".join(f"{n:,}" for n in lengths) + " |"
    lines = [head, "|---" * (len(lengths) + 1) + "|"]
    for mode, res in rows.items():
        cells = ["/".join(f"{res[str(n)][d]:.0f}" for d in NAMED_DEPTHS) for n in lengths]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def multikey_table(res, lengths):
    """Markdown table of multi-key results (exact match %, or cells already written as text): one
    row per number of key lines, one column per length; '-' where the lines do not fit."""
    lines = ["| key lines | " + " | ".join(f"{n:,}" for n in lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
    for k, row in res.items():
        cells = ["-" if row[str(n)] is None else row[str(n)] if isinstance(row[str(n)], str) else f"{row[str(n)]:.0f}"
                 for n in lengths]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def heatmap(grid, depths, lengths, title, path):
    """grid (depths, lengths) of exact-match % as an image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(lengths), 1.0 + 0.6 * len(depths)))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for i in range(len(depths)):
        for j in range(len(lengths)):
            ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(lengths)), [f"{n:,}" for n in lengths], rotation=30)
    ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
    ax.set_xlabel("prompt length (characters)")
    ax.set_ylabel("key depth (0 start, 1 end)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="exact match %")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def describe_offsets(acc, below=95.0):
    """'0: 67%, 1: 72%, 2: 94%, the other 29: 98-100%': the positions under `below` one by one
    (or only how many, when there are more than six)."""
    low = [f"{i}: {a:.0f}%" for i, a in enumerate(acc) if a is not None and a < below]
    rest = [a for a in acc if a is not None and a >= below]
    if len(low) > 6:
        seen = [a for a in acc if a is not None]
        return f"{len(low)} of {len(seen)} positions under {below:.0f}% (mean {np.mean(seen):.0f}%)"
    if rest:
        span = f"{min(rest):.0f}" if round(min(rest)) == round(max(rest)) else f"{min(rest):.0f}-{max(rest):.0f}"
        low.append(f"the other {len(rest)}: {span}%")
    return ", ".join(low)

