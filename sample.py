"""
Sample text from a model that train.py trained.

    python sample.py                                     # from out-shakespeare-char/ckpt.npz
    python sample.py --start="ROMEO:" --num_samples=2 --max_new_tokens=300
    python sample.py --start=FILE:prompt.txt --temperature=0    # a prompt from a file; greedy

The prompt goes through the streaming state (infini.forward_stream) segment_len tokens at a
time, so a prompt of any length runs in bounded memory: what falls out of the current
segment lives on only in the compressive memory. Then tokens come one at a time.
The checkpoint holds its own tokenizer, so nothing else is needed (no data folder).
"""
import collections
import os
import sys

import numpy as np
from tqdm import tqdm

import checkpoint
import configurator
import infini

# -----------------------------------------------------------------------------
out_dir = "out-shakespeare-char"  # read out_dir/ckpt.npz (train.py's default out_dir)
ckpt = ""               # a checkpoint path instead of out_dir/ckpt.npz
device = "auto"         # "auto" (a GPU if CuPy finds one), "cpu" or "cuda"
start = "\n"            # the prompt; "FILE:path" reads it from a file
num_samples = 3         # samples, one after another, each from the same prompt
max_new_tokens = 500    # tokens generated per sample
temperature = 0.8       # < 1 is more conservative, > 1 more random; 0 always takes the likeliest token
top_k = 200             # sample among the top_k likeliest tokens only (0: all)
seed = 1337             # the sampling's random numbers
# -----------------------------------------------------------------------------
DEFAULTS = configurator.defaults(globals())

Tokenizer = collections.namedtuple("Tokenizer", "encode decode kind")


def validate(c):
    for key in ("num_samples",):
        if c[key] < 1:
            raise ValueError(f"--{key} must be at least 1, got {c[key]}")
    for key in ("max_new_tokens", "temperature", "top_k"):
        if c[key] < 0:
            raise ValueError(f"--{key} must not be negative, got {c[key]}")
    if c["device"] not in ("cpu", "cuda", "auto"):
        raise ValueError(f"--device must be one of cpu, cuda, auto; got {c['device']!r}")
    if not c["start"]:
        raise ValueError("--start must not be empty: the model needs at least one token to go on from")


def load_tokenizer(meta):
    """Tokenizer(encode, decode, kind) from the description train.py stored in the checkpoint.
    encode raises ValueError naming a character that the vocabulary lacks."""
    if meta["kind"] == "char":
        itos = meta["itos"]
        stoi = {ch: i for i, ch in enumerate(itos)}

        def encode(text):
            for ch in text:
                if ch not in stoi:
                    raise ValueError(f"the character {ch!r} (U+{ord(ch):04X}) is not in the vocabulary "
                                     f"of this checkpoint")
            return [stoi[ch] for ch in text]

        return Tokenizer(encode, lambda ids: "".join(itos[i] for i in ids), "char")
    import tiktoken
    if meta["kind"] == "bpe":
        import base64
        ranks = {base64.b64decode(t): i for i, t in enumerate(meta["ranks"])}
        enc = tiktoken.Encoding(name=meta["name"], pat_str=meta["pat_str"], mergeable_ranks=ranks,
                                special_tokens={})
    else:  # "tiktoken": one of tiktoken's own encodings (it may need its cache or the network)
        enc = tiktoken.get_encoding(meta["name"])
    return Tokenizer(enc.encode_ordinary, enc.decode, meta["kind"])


def load_model(ckpt_path, device="cpu"):
    """-> params (on the device), cfg (infini.Config), tokenizer. CheckpointError if unreadable."""
    params, cfg, meta = checkpoint.load_model(ckpt_path, device)
    if not isinstance(meta.get("tokenizer"), dict) or meta["tokenizer"].get("kind") not in ("char", "bpe", "tiktoken"):
        raise checkpoint.CheckpointError(f"{ckpt_path} holds no tokenizer that sample.py can read")
    return params, cfg, load_tokenizer(meta["tokenizer"])


PROGRESS_FROM = 64  # prompts of this many segments or more show a progress bar while they are read


def prefill(params, cfg, ids, state):
    """Feed token ids (a list) through the streaming state, segment_len at a time.
    -> logits (V,) after the last one, and the state."""
    xp = infini.get_array_module(params["wte"])
    ids = xp.asarray(np.asarray(ids, dtype=np.int64)[None, :])             # (1,T)
    starts = range(0, ids.shape[1], cfg.segment_len)
    for i in tqdm(starts, desc="reading the prompt", unit="segment", disable=len(starts) < PROGRESS_FROM,
                  file=sys.stderr, dynamic_ncols=True, leave=False):
        logits, state = infini.forward_stream(params, ids[:, i:i + cfg.segment_len], state, cfg)  # (1,<=N,V)
    return logits[0, -1], state


def pick_token(logits, temperature, top_k, rng):
    """The next token id from logits (V,): greedy at temperature 0, else sampled."""
    logits = infini.to_numpy(logits).astype(np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    with np.errstate(over="ignore"):                                       # a tiny temperature: -inf, as it should
        logits = (logits - logits.max()) / temperature                    # <= 0, so exp never overflows
    if 0 < top_k < logits.size:
        kth = np.partition(logits, -top_k)[-top_k]                         # the k-th largest
        logits = np.where(logits < kth, -np.inf, logits)
    p = np.exp(logits)                                                     # the likeliest token has p = 1
    return int(rng.choice(logits.size, p=p / p.sum()))


def generate(params, cfg, prompt_ids, max_new_tokens, temperature=1.0, top_k=0, rng=None, stop=None):
    """Read prompt_ids (a non-empty list), then generate up to max_new_tokens ids, one at a
    time. stop(new_ids) -> True ends early. Returns the list of new ids."""
    if len(prompt_ids) == 0:
        raise ValueError("the prompt is empty: the model needs at least one token to go on from")
    rng = rng if rng is not None else np.random.default_rng()
    xp = infini.get_array_module(params["wte"])
    logits, state = prefill(params, cfg, prompt_ids, infini.init_state(params, cfg, batch_size=1))
    new = []
    for _ in range(max_new_tokens):
        new.append(pick_token(logits, temperature, top_k, rng))
        if stop is not None and stop(new):
            break
        logits, state = infini.forward_stream(params, xp.asarray([[new[-1]]]), state, cfg)
        logits = logits[0, -1]
    return new


def read_prompt(start):
    """The --start text, or the contents of the file after FILE:."""
    if start.startswith("FILE:"):
        path = start[len("FILE:"):]
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except UnicodeDecodeError as e:
            raise ValueError(f"--start: {path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    return start


def main(c):
    path = c["ckpt"] or os.path.join(c["out_dir"], "ckpt.npz")
    if not os.path.exists(path):
        print(f"error: no checkpoint at {path}: run train.py first (or pass --out_dir / --ckpt)", file=sys.stderr)
        return 1
    try:
        params, cfg, tok = load_model(path, c["device"])
        text = read_prompt(c["start"])
        prompt = tok.encode(text)
    except checkpoint.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # FILE: a prompt file that cannot be read
        configurator.fail(f"--start: cannot read {e.filename}: {e.strerror}")
    except ValueError as e:  # a character outside the vocabulary; --device=cuda without a GPU
        configurator.fail(str(e))
    if not prompt:
        configurator.fail("--start: the prompt encodes to no tokens")
    print(f"{path}: {cfg.n_layer} layers, d_model {cfg.d_model}, memory {cfg.memory!r}; "
          f"prompt of {len(prompt)} tokens", file=sys.stderr)
    rng = np.random.default_rng(c["seed"])
    for _ in range(c["num_samples"]):
        new = generate(params, cfg, prompt, c["max_new_tokens"], c["temperature"], c["top_k"], rng)
        shown = f"[{len(prompt)} prompt tokens from {c['start'][5:]}]\n" if c["start"].startswith("FILE:") else text
        print(shown + tok.decode(new))
        print("---------------")
    return 0


if __name__ == "__main__":
    sys.exit(main(configurator.apply(dict(DEFAULTS), sys.argv[1:], validate, __doc__)))
