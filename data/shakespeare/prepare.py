"""
Prepare Shakespeare's plays with a byte-pair-encoding (BPE) tokenizer, through tiktoken.

The same plays and the same train/val split as data/shakespeare_char (the text comes
from ../plays.py). Two tokenizers:

--encoding=bpe   (default, offline) train a small byte-level BPE on the training plays,
                 here, in plain Python: split the text into words with GPT-2's regex,
                 then merge the most frequent pair of adjacent tokens, again and again,
                 until there are --vocab_size tokens (256 single bytes + the merges).
                 Saved beside the data as tokenizer.tiktoken (tiktoken's file format:
                 one "<base64 token bytes> <rank>" per line).
--encoding=gpt2  tiktoken's GPT-2 BPE (50257 tokens). Its files are downloaded once
                 (network) and cached by tiktoken; without either this stops with an error.

Writes, into this folder (or --out_dir):
    train.bin, val.bin  token ids, np.uint16, all plays of the split concatenated
    meta.pkl            a plain dict: vocab_size, encoding ("bpe" or "gpt2"),
                        tokenizer {"name", "file", "pat_str"}, train_docs / val_docs:
                        [{"name", "start", "end"}] token offsets of each play in the .bin
    tokenizer.tiktoken  the learned BPE ranks (--encoding=bpe only)

    python data/shakespeare/prepare.py
    python data/shakespeare/prepare.py --vocab_size=4096
    python data/shakespeare/prepare.py --encoding=gpt2

From Python: prepare(out_dir=None, plays=None, encoding="bpe", vocab_size=2048) -> meta,
and load_encoding(data_dir) -> tiktoken.Encoding to encode/decode text (enc.decode(ids)).
"""
import base64
import collections
import heapq
import os
import pickle
import sys
import threading
import time

import regex  # the `regex` package (a tiktoken dependency): it knows \p{L} and possessive ++
import tiktoken

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # data/
from plays import fail, load_plays, parse_args, split_plays, write_docs  # noqa: E402

# defaults, overridable with --key=value
out_dir = os.path.dirname(os.path.abspath(__file__))  # where train.bin, val.bin, meta.pkl go
encoding = "bpe"    # "bpe": train our own byte-level BPE (offline); "gpt2": tiktoken's GPT-2 BPE
vocab_size = 2048   # --encoding=bpe: 256 single bytes + 1792 merges (at most 65536: ids are uint16)
plays = ""          # comma-separated subset of plays, e.g. "macbeth,the-tempest"; "" = all 38

# GPT-2's pre-tokenizer (tiktoken's r50k_base pat_str): "'s", " word", " 123", " !?", spaces
PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
TOKENIZER_FILE = "tokenizer.tiktoken"
GPT2_TIMEOUT = 30  # seconds to wait for tiktoken to fetch the GPT-2 files before giving up


# -----------------------------------------------------------------------------
# byte-level BPE training

def merge(ids, pair, new_id):
    """Replace every occurrence of `pair` in `ids`, left to right: [a, b, c, a, b] -> [X, c, X]."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(text, vocab_size, pat_str=PAT_STR):
    """Learn a byte-level BPE on `text`. Returns tiktoken's mergeable_ranks {token bytes: rank}:
    the 256 single bytes are ranks 0..255, then one new token per merge, in the order learned
    (fewer than vocab_size if the text runs out of pairs).

    Tokens never cross the words that pat_str splits the text into, so we count each unique
    word once, times its frequency, and after a merge update only the words that contain the
    merged pair. The most frequent pair wins; ties go to the smallest pair of ids."""
    if vocab_size < 256:
        raise ValueError(f"vocab_size must be at least 256 (the single bytes), got {vocab_size}")
    word_freq = collections.Counter(regex.findall(pat_str, text))  # {" thee": 3010, ...}
    words = [list(w.encode("utf-8")) for w in word_freq]  # each word as token ids, first its bytes
    freqs = list(word_freq.values())
    vocab = [bytes([b]) for b in range(256)]  # token id -> its bytes (id == rank)
    ranks = {tok: i for i, tok in enumerate(vocab)}  # token bytes -> id

    pair_count = collections.Counter()  # (id, id) -> occurrences in the whole text
    pair_words = collections.defaultdict(set)  # (id, id) -> words that contain it (or did once)
    for i, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pair_count[pair] += freqs[i]
            pair_words[pair].add(i)
    heap = [(-n, pair) for pair, n in pair_count.items()]  # most frequent first; stale entries
    heapq.heapify(heap)                                    # are skipped when popped

    while len(vocab) < vocab_size and heap:
        neg_n, pair = heapq.heappop(heap)
        if pair_count.get(pair) != -neg_n:
            continue  # stale: this pair's count changed after the entry was pushed
        new = vocab[pair[0]] + vocab[pair[1]]
        if new in ranks:  # rare: these bytes are already a token, made from another pair
            new_id = ranks[new]
        else:
            new_id = len(vocab)
            vocab.append(new)
            ranks[new] = new_id
        changed = set()
        for i in pair_words.pop(pair):
            w, f = words[i], freqs[i]
            for p in zip(w, w[1:]):  # take the word's pairs out of the counts...
                pair_count[p] -= f
                changed.add(p)
            words[i] = w = merge(w, pair, new_id)
            for p in zip(w, w[1:]):  # ...and put the merged word's pairs back in
                pair_count[p] += f
                pair_words[p].add(i)
                changed.add(p)
        for p in changed:
            if pair_count[p] > 0:
                heapq.heappush(heap, (-pair_count[p], p))
            else:
                del pair_count[p]
                pair_words.pop(p, None)
    return ranks


# -----------------------------------------------------------------------------
# tokenizer files and tiktoken encodings

def save_tiktoken_bpe(ranks, path):
    """Write ranks in tiktoken's format: one "<base64 of the token bytes> <rank>" per line."""
    with open(path, "w") as f:
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(token).decode()} {rank}\n")


def load_tiktoken_bpe(path):
    """Read a tiktoken ranks file -> {token bytes: rank}. (tiktoken.load.load_tiktoken_bpe reads
    the same format but caches files by their path, so it would return a stale copy after a
    re-run of prepare; reading these few lines ourselves avoids that.)"""
    with open(path) as f:
        return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in f if line.strip())}


def bpe_encoding(ranks, name, pat_str=PAT_STR):
    """A tiktoken.Encoding from our ranks: enc.encode_ordinary(text) -> ids, enc.decode(ids) -> text."""
    return tiktoken.Encoding(name=name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens={})


def gpt2_encoding(timeout=GPT2_TIMEOUT):
    """tiktoken's GPT-2 encoding. Its first use downloads vocab.bpe and encoder.json into
    tiktoken's cache ($TIKTOKEN_CACHE_DIR, default <tmp>/data-gym-cache); the download has no
    timeout of its own, so it runs in a thread and we stop waiting after `timeout` seconds."""
    result = {}

    def load():
        try:
            result["enc"] = tiktoken.get_encoding("gpt2")
        except Exception as e:  # no network, a proxy error, a bad cache, ...
            result["error"] = e

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout)
    if "enc" in result:
        return result["enc"]
    why = f"no answer after {timeout}s" if thread.is_alive() else type(result["error"]).__name__
    raise SystemExit(f"error: --encoding=gpt2 needs the GPT-2 BPE files, which tiktoken downloads once "
                     f"(network access) and caches; that failed ({why}). Offline, use --encoding=bpe")


def load_encoding(data_dir=None):
    """The tiktoken.Encoding that prepare() used for the data in data_dir (default: this folder)."""
    data_dir = data_dir or os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(data_dir, "meta.pkl"), "rb") as f:
        meta = pickle.load(f)
    if meta["encoding"] == "gpt2":
        return gpt2_encoding()
    tok = meta["tokenizer"]
    return bpe_encoding(load_tiktoken_bpe(os.path.join(data_dir, tok["file"])), tok["name"], tok["pat_str"])


# -----------------------------------------------------------------------------

def prepare(out_dir=None, plays=None, encoding="bpe", vocab_size=2048):
    """Write train.bin, val.bin, meta.pkl (and tokenizer.tiktoken) into out_dir (default: this
    folder) and return the meta dict. plays: optional list of play names (a subset, for tests)."""
    out_dir = out_dir or os.path.dirname(os.path.abspath(__file__))
    if encoding not in ("bpe", "gpt2"):
        raise ValueError(f"--encoding must be bpe or gpt2, got {encoding!r}")
    if encoding == "bpe" and not 256 <= vocab_size <= 2**16:
        raise ValueError(f"--vocab_size must be in 256..65536 (ids are stored as uint16), got {vocab_size}")
    enc = gpt2_encoding() if encoding == "gpt2" else None  # fail early, before any work
    texts = load_plays(plays)  # {name: text}
    train_names, val_names = split_plays(list(texts))
    os.makedirs(out_dir, exist_ok=True)

    tokenizer = {"name": "gpt2", "file": None, "pat_str": None}  # GPT-2: tiktoken knows its own
    if encoding == "bpe":
        t0 = time.time()
        ranks = train_bpe("".join(texts[n] for n in train_names), vocab_size)  # training plays only
        tokenizer["name"] = f"shakespeare_bpe_{len(ranks)}"
        tokenizer["file"] = TOKENIZER_FILE
        tokenizer["pat_str"] = PAT_STR
        save_tiktoken_bpe(ranks, os.path.join(out_dir, TOKENIZER_FILE))
        enc = bpe_encoding(ranks, tokenizer["name"])
        learned = [enc.decode_single_token_bytes(i) for i in range(256, min(len(ranks), 256 + 12))]
        print(f"trained a BPE of {len(ranks)} tokens in {time.time() - t0:.1f}s; first merges: {learned}")

    docs = {}
    for split, names in (("train", train_names), ("val", val_names)):
        split_texts = {n: texts[n] for n in names}
        docs[split] = write_docs(split_texts, enc.encode_ordinary, os.path.join(out_dir, f"{split}.bin"))
    for d in docs["val"]:  # the tokenizer must give the text back exactly, also on unseen plays
        ids = enc.encode_ordinary(texts[d["name"]])
        assert len(ids) == d["end"] - d["start"] and enc.decode(ids) == texts[d["name"]], d["name"]

    meta = {
        "vocab_size": enc.n_vocab,
        "encoding": encoding,
        "tokenizer": tokenizer,
        "train_docs": docs["train"],
        "val_docs": docs["val"],
    }
    with open(os.path.join(out_dir, "meta.pkl"), "wb") as f:
        pickle.dump(meta, f)

    for split, names in (("train", train_names), ("val", val_names)):
        n_chars = sum(len(texts[n]) for n in names)
        n_tokens = docs[split][-1]["end"]
        print(f"{split}: {n_tokens:,} tokens ({n_chars:,} characters, {n_chars / n_tokens:.2f} per token) "
              f"in {len(names)} plays" + (f" ({', '.join(names)})" if split == "val" else ""))
    print(f"{enc.name}: vocab size {enc.n_vocab}; wrote train.bin, val.bin, meta.pkl"
          + (f", {TOKENIZER_FILE}" if encoding == "bpe" else "") + f" to {out_dir}")
    return meta


if __name__ == "__main__":
    config = parse_args(sys.argv[1:], {"out_dir": out_dir, "encoding": encoding, "vocab_size": vocab_size,
                                       "plays": plays}, __doc__)
    try:
        prepare(config["out_dir"], [p for p in config["plays"].split(",") if p] or None,
                config["encoding"], config["vocab_size"])
    except ValueError as e:  # an unknown play, a bad --encoding or --vocab_size
        fail(f"error: {e}")
