"""Writing files so that a crash never leaves a half-written one."""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def _replacing(path, suffix=".tmp"):
    """Yields a temporary path beside `path` to write; then moves it to `path` in one rename (or removes it on error)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; a plain open() would not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path, content):
    """Writes the bytes `content` to `path` through a temporary file: complete or not at all, with the user's umask.

    Example:

    >>> atomic_write("results.json", json.dumps(rows).encode())
    """
    with _replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())


def atomic_save(model, path):
    """Saves a Keras model to the `.keras` file `path`, written once beside it and renamed: complete or not at all.

    Example:

    >>> atomic_save(small, "model.shrunk.keras")
    """
    with _replacing(path, suffix=".keras") as tmp:
        model.save(tmp)


def _umask():
    current = os.umask(0)
    os.umask(current)
    return current


def publish_directory(staging, path):
    """Moves the finished folder `staging` to `path` in one rename (replacing a stale `path`), with the user's umask.

    If another process publishes `path` at the same moment, its folder is kept and `staging` removed.

    Example:

    >>> staging = tempfile.mkdtemp(dir=run_dir)   # write everything there, then:
    >>> publish_directory(staging, os.path.join(run_dir, "round-003"))
    """
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
    if os.path.exists(path):
        shutil.rmtree(path)
    try:
        os.replace(staging, path)
    except OSError:
        if not os.path.isdir(path):
            raise
        shutil.rmtree(staging)


def cache_folder(kind):
    """Where tfprune keeps measurements of `kind` (e.g. "latency"): $TFPRUNE_CACHE/kind, else ~/.cache/tfprune/kind."""
    return Path(os.environ.get("TFPRUNE_CACHE", Path.home() / ".cache" / "tfprune")) / kind


def digest(value):
    """A short digest of a JSON-able value, stable across runs: cache file names and probe ids."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
