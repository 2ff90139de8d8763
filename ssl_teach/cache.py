"""Where cached files live, and how they are written (atomically) and read (safely)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

CACHE_ENV = "SSL_TEACH_CACHE"


def cache_dir() -> Path:
    """The cache folder: ``$SSL_TEACH_CACHE`` if set, else ``~/.cache/ssl_teach``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ssl_teach")


def config_key(config: dict) -> str:
    """A stable hash of a JSON-able configuration: equal configs give equal keys."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _atomic_write(path: Path, write, mode: str) -> None:
    """Write to a temporary file in the same folder, then rename: a reader never sees a
    half-written file, even if the process dies mid-write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` atomically."""
    _atomic_write(path, lambda f: torch.save(obj, f), "wb")


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    _atomic_write(path, lambda f: f.write(text), "w")


class CorruptCacheFile(RuntimeError):
    """A cache file exists but cannot be read back."""


def safe_load(path: Path):
    """Load a cache file with ``weights_only=True`` (no code runs from the file); a file that
    cannot be read raises :class:`CorruptCacheFile` naming it, so the caller can rebuild it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, garbage, or written by something else
        raise CorruptCacheFile(
            f"cache file {path} is unreadable ({type(err).__name__}: {err}); "
            "delete it, or it will be rebuilt") from err
