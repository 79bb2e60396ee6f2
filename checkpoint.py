"""
checkpoint.py: save and load a training checkpoint as ONE portable .npz file.

Inside the .npz (a zip of .npy files, read with np.load(path, allow_pickle=False)):
    param/<name>    every parameter, a host NumPy array (never a CuPy array)
    adam_m/<name>   AdamW first moments   } only when an optimiser state was saved
    adam_v/<name>   AdamW second moments  }
    adam_step       () int64, AdamW's step count (for its bias correction)
    meta            () str, JSON: {"format": "infini-checkpoint", "version": 1, ...} plus
                    whatever the caller saves (train.py: config, step, tokenizer, RNG state, ...)
No pickled objects: a checkpoint written on a GPU loads on a machine without one.

Saving is atomic: the file is written to a temporary name in the same folder, flushed to
disk, then renamed over the old one (os.replace), so a crash mid-write leaves the previous
checkpoint whole.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from infini import to_numpy

FORMAT, VERSION = "infini-checkpoint", 1


class CheckpointError(Exception):
    """A missing, unreadable or corrupt checkpoint; the message is one line for the user."""


def save_checkpoint(path, params, opt, meta):
    """Write params (dict of arrays), opt (infini.adamw_init's dict, or None) and meta (a
    JSON-able dict) to path, atomically."""
    arrays = {f"param/{k}": to_numpy(v) for k, v in params.items()}
    if opt is not None:
        arrays.update({f"adam_m/{k}": to_numpy(v) for k, v in opt["m"].items()})
        arrays.update({f"adam_v/{k}": to_numpy(v) for k, v in opt["v"].items()})
        arrays["adam_step"] = np.array(opt["step"], dtype=np.int64)
    meta = {**meta, "format": FORMAT, "version": VERSION}
    arrays["meta"] = np.array(json.dumps(meta, allow_nan=False))  # a unicode array, not a pickle

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)  # same folder: same disk
    try:
        with os.fdopen(fd, "wb") as f:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private (0600): give it a normal file's mode
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the checkpoint
        os.replace(tmp, path)     # atomic: readers see the old file or the new one, never half of one
    except BaseException:         # also KeyboardInterrupt: never leave the temporary file behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load_checkpoint(path):
    """-> (params, opt or None, meta): host NumPy arrays and the meta dict. CheckpointError
    (one line) if the file is missing or is not a readable checkpoint."""
    if not os.path.isfile(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}  # read everything now; the file closes after
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated?): {why}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an {FORMAT} file")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {meta.get('version')}, this code reads {VERSION}")

    def group(prefix):
        return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    params = group("param/")
    opt = None
    if "adam_step" in arrays:
        opt = {"step": int(arrays["adam_step"]), "m": group("adam_m/"), "v": group("adam_v/")}
        if set(opt["m"]) != set(params) or set(opt["v"]) != set(params):
            raise CheckpointError(f"{path}: the optimiser moments do not match the parameters")
    return params, opt, meta
