"""
configurator.py: nanoGPT-style settings for train.py, sample.py and passkey.py, but strict.

A script declares its defaults as plain variables at the top, then reads the command line:

    batch_size = 12
    learning_rate = 1e-3
    device = "auto"
    ...
    DEFAULTS = configurator.defaults(globals())       # {name: value} of the settings above
    config = configurator.apply(dict(DEFAULTS), sys.argv[1:], validate)   # or globals(), in place

Each argument is either a config file (a Python file of assignments, e.g.
config/train_shakespeare_char.py) or `--key=value`; later ones win. Values are read with
ast.literal_eval and must have the type of the default (an int is fine where a float is
expected; bools are True / False, and a bare `--flag` means True); strings are taken as
written (`--device=cpu`).
An unknown key, a wrong type or a value the script's validate() rejects is one line on
stderr naming the key, and exit status 2 (as argparse does), never a traceback.
`--help` prints each setting with its default and the comment beside it in the script.
overrides(argv, DEFAULTS) gives only what the arguments set
(train.py's --init_from=resume takes the rest from the checkpoint).
"""
import ast
import io
import os
import sys
import tokenize

TYPES = (bool, int, float, str)  # the types a setting may have


def defaults(namespace):
    """The settings in a module's globals(): public names whose values are bool, int, float or str."""
    return {k: v for k, v in namespace.items() if not k.startswith("_") and type(v) in TYPES}


def fail(message):
    """One line on stderr and exit status 2 (bad arguments, like argparse)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def typed(key, value, default):
    """value, checked against the type of default (int -> float is allowed); ValueError if it doesn't fit."""
    want = type(default)
    if want is float and type(value) is int:
        return float(value)
    if type(value) is not want:  # type(), not isinstance(): True is not an int here
        article = "an" if want.__name__[0] in "aeiou" else "a"
        raise ValueError(f"--{key} takes {article} {want.__name__} (like {default!r}), got {value!r}")
    return value


def parse_value(key, text, default):
    """The text after `--key=`: a string as written, anything else through ast.literal_eval."""
    if type(default) is str:
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # not a Python literal: typed() reports it as a wrong type
    return typed(key, value, default)


def read_config_file(path, config):
    """The assignments of a Python config file, checked against config's keys and types."""
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} not found (arguments are a config file or --key=value)")
    namespace = {}
    try:
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), namespace)
    except Exception as e:  # a syntax error, a NameError, ... in the file
        raise ValueError(f"config file {path}: {type(e).__name__}: {e}") from None
    updates = {}
    for key, value in namespace.items():
        if key.startswith("_"):  # __builtins__, and private helpers the file may define
            continue
        if key not in config:
            raise ValueError(f"config file {path}: unknown key {key!r}")
        updates[key] = typed(key, value, config[key])
    return updates


def setting_comments(path):
    """{name: comment} for the top-level lines `name = value  # comment` of a Python file."""
    if not path or not os.path.isfile(path):
        return {}
    with open(path) as f:
        source = f.read()
    comments, line = {}, []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.NEWLINE, tokenize.NL):
            line = []
        elif tok.type in (tokenize.INDENT, tokenize.DEDENT):  # a DEDENT opens the line after a block
            continue
        elif tok.type == tokenize.COMMENT:
            if len(line) >= 2 and line[0].type == tokenize.NAME and line[0].start[1] == 0 and line[1].string == "=":
                comments.setdefault(line[0].string, tok.string.lstrip("#").strip())
        else:
            line.append(tok)
    return comments


def usage(config, doc, source=None):
    """--help: the script's docstring, then every setting, its default and its comment."""
    lines = [doc.strip(), ""] if doc else []
    lines.append("settings (override with a config file or --key=value):")
    comments = setting_comments(source)
    width = max((len(f"{k} = {v!r}") for k, v in config.items()), default=0)
    for k, v in config.items():
        text = f"{k} = {v!r}"
        lines.append(f"  {text:<{width}}  # {comments[k]}" if k in comments else f"  {text}")
    return "\n".join(lines)


def overrides(argv, settings):
    """{key: value} of what the config files and --key=value in argv set, checked against the
    keys and types of settings (later arguments win). ValueError naming the key if wrong."""
    given = {}
    for arg in argv:
        if not arg.startswith("--"):
            given.update(read_config_file(arg, settings))
            continue
        key, eq, text = arg[2:].partition("=")
        if key not in settings:
            raise ValueError(f"unknown key --{key} (see --help for the known keys)")
        if not eq and type(settings[key]) is bool:
            given[key] = True                                           # a bare --flag
            continue
        if not eq:
            raise ValueError(f"--{key} needs a value: --{key}=...")
        given[key] = parse_value(key, text, settings[key])
    return given


def apply(config, argv, validate=None, doc="", source=None):
    """Apply config files and --key=value overrides in argv to the dict config (in place; pass a
    module's globals() or a dict of defaults), then validate(settings), which raises ValueError
    for an impossible value. Returns the dict of settings. Any error: one line, exit status 2.
    source: the script's file, whose comments --help prints (default: the script being run)."""
    settings = defaults(config)
    if "-h" in argv or "--help" in argv:
        print(usage(settings, doc, source or getattr(sys.modules.get("__main__"), "__file__", None)))
        sys.exit(0)
    try:
        settings.update(overrides(argv, settings))
        if validate is not None:
            validate(settings)
    except ValueError as e:
        fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    config.update(settings)
    return settings
