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
checkpoint whole. A checkpoint never holds NaN or inf: saving and loading refuse them.
Before a run writes anything, claim_out_dir checks that its folder can be written and that it
does not hold another run's checkpoint (which only --init_from=resume or --overwrite=True may touch).
"""
import glob
import json
import os
import tempfile
import zipfile

import numpy as np

import infini
from infini import to_numpy

FORMAT, VERSION = "infini-checkpoint", 1


class CheckpointError(Exception):
    """A missing, unreadable or corrupt checkpoint, or one that cannot be saved; the message is
    one line for the user."""


class OutDirError(ValueError):
    """An output folder that cannot be written, or that holds a run this one would overwrite."""


def save_checkpoint(path, params, opt, meta):
    """Write params (dict of arrays), opt (infini.adamw_init's dict, or None) and meta (a
    JSON-able dict) to path, atomically."""
    arrays = {f"param/{k}": to_numpy(v) for k, v in params.items()}
    if opt is not None:
        arrays.update({f"adam_m/{k}": to_numpy(v) for k, v in opt["m"].items()})
        arrays.update({f"adam_v/{k}": to_numpy(v) for k, v in opt["v"].items()})
        arrays["adam_step"] = np.array(opt["step"], dtype=np.int64)
    bad = infini.first_nonfinite(arrays)
    if bad is not None:  # a diverged model is never saved over a good checkpoint
        raise CheckpointError(f"not saving {path}: {bad} holds NaN or inf values")
    meta = {**meta, "format": FORMAT, "version": VERSION}
    arrays["meta"] = np.array(json.dumps(meta, allow_nan=False))  # a unicode array, not a pickle

    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".npz", dir=folder)  # same folder: same disk
        with os.fdopen(fd, "wb") as f:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private (0600): give it a normal file's mode
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the checkpoint
        os.replace(tmp, path)     # atomic: readers see the old file or the new one, never half of one
    except BaseException as e:    # also KeyboardInterrupt: never leave the temporary file behind
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):  # a full disk, a folder gone read-only, ...
            kept = "the previous checkpoint is unchanged" if os.path.exists(path) else "nothing was saved"
            raise CheckpointError(f"cannot save {path}: {e.strerror or e}; {kept}") from None
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
    if not zipfile.is_zipfile(path):  # np.load would take it for a pickle and hint at allow_pickle
        raise CheckpointError(f"{path} is not a readable checkpoint (not an .npz file: corrupt or truncated?)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}  # read everything now; the file closes after
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "pickle" in why:  # an object array inside: never suggest loading it unsafely
            why = "it holds pickled objects"
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
    bad = infini.first_nonfinite({k[len("param/"):] if k.startswith("param/") else k: v
                                  for k, v in arrays.items() if v.dtype.kind == "f"})
    if bad is not None:
        raise CheckpointError(f"{path} is not usable: {bad} holds NaN or inf values")
    return params, opt, meta


def load_model(path, device="cpu"):
    """A trained model: -> params (on the device: 'cpu', 'cuda' or 'auto'), cfg (infini.Config),
    meta. CheckpointError (one line) if the file is unreadable or its params do not fit its
    config; ValueError if the device cannot run."""
    params, _, meta = load_checkpoint(path)
    try:
        cfg = infini.Config(**meta["model"])
        infini.check_params(params, cfg)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: the parameters do not fit the model it describes: {e}") from None
    params, _ = infini.to_device(infini.backend(device), params)
    return params, cfg, meta


# -----------------------------------------------------------------------------
# the output folder of a run

TMP_PREFIX = ".tmp-"  # save_checkpoint's temporary files: TMP_PREFIX + random + ".npz"


def claim_out_dir(folder, resume, overwrite, ckpt_name="ckpt.npz"):
    """Make sure a run may write into folder before it writes anything. A new run (resume False)
    on a folder that holds a checkpoint is refused unless overwrite; the folder is created if
    needed and a probe file written and removed, so an unwritable path fails now, not at the
    first save. Temporary files that killed saves left behind are removed.
    -> the folders created (remove_if_empty takes them back if the run fails). OutDirError if not."""
    ckpt = os.path.join(folder, ckpt_name)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutDirError(f"--out_dir={folder} is a file, not a folder")
    if not resume and os.path.exists(ckpt) and not overwrite:
        raise OutDirError(f"{folder} already holds a trained run ({ckpt}{describe(ckpt)}): go on with "
                          f"--init_from=resume, pick another --out_dir, or replace it with --overwrite=True")
    created, parent = [], os.path.abspath(folder)
    while not os.path.exists(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(prefix=TMP_PREFIX, dir=folder):
            pass
    except OSError as e:
        remove_if_empty(created)
        raise OutDirError(f"cannot write to --out_dir={folder}: {e.strerror or e}") from None
    for stale in glob.glob(os.path.join(glob.escape(folder), TMP_PREFIX + "*.npz")):
        os.remove(stale)  # a save that was killed before its rename: never a checkpoint
    return created


def describe(path):
    """', step N' from a checkpoint's meta (read alone), or '' if it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            step = json.loads(str(npz["meta"])).get("step")
        return f", step {step}" if step is not None else ""
    except Exception:  # a corrupt file is still not ours to overwrite: say nothing more
        return ""


def remove_if_empty(folders):
    """Remove the folders claim_out_dir created (deepest first) that are still empty."""
    for f in folders:
        try:
            os.rmdir(f)
        except OSError:  # not empty, or already gone
            pass
