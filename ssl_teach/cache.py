"""Where cached files live, and how they are written (atomically) and read (safely).

Files are written to a temporary file next to the target and renamed over it, so a reader never
sees half a file. They get the permissions of any new file (0666 less the umask, usually
0644), so that a cache folder handed out to a whole lab can be read by every learner.
Temporary files left behind by a killed run are removed the next time a file is written next
to them, once they are :data:`STALE_SECONDS` old.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
import warnings
from pathlib import Path

import torch

CACHE_ENV = "SSL_TEACH_CACHE"

STALE_SECONDS = 3600
"""A temporary file this old belongs to a run that was killed while writing (a write takes
seconds): it is removed."""

_TEMPORARY = re.compile(r"^(?P<target>.+)\.[A-Za-z0-9_]{8}\.tmp$")
"""The name of a temporary file written here: ``<target name>.<8 random characters>.tmp``."""


def cache_dir() -> Path:
    """The cache folder: ``$SSL_TEACH_CACHE`` if set, else ``~/.cache/ssl_teach``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ssl_teach")


def config_key(config: dict) -> str:
    """A stable hash of a JSON-able configuration: equal configs give equal keys."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _new_temporary(path: Path) -> tuple[int, Path]:
    """Create a fresh temporary file next to ``path``. Created with mode 0666, so the umask
    decides its permissions, as for any new file (``tempfile.mkstemp`` would make it 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name next to {path}")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def remove_stale_temporaries(folder: Path, *, target: str | None = None,
                             older_than: float = STALE_SECONDS) -> list[Path]:
    """Remove the temporary files that writes here left in ``folder`` (only those of the file
    called ``target``, when given) more than ``older_than`` seconds ago; returns them."""
    removed = []
    now = time.time()
    try:
        candidates = list(Path(folder).glob("*.tmp"))
    except OSError:
        return removed
    for path in candidates:
        match = _TEMPORARY.match(path.name)
        if not match or (target is not None and match["target"] != target):
            continue
        try:
            if path.is_file() and now - path.stat().st_mtime > older_than:
                path.unlink()
                removed.append(path)
        except OSError:  # removed by another process meanwhile, or not ours to remove
            continue
    return removed


def _cannot_write(path: Path, err: OSError) -> None:
    warnings.warn(
        f"could not write the cache file {path} ({err.strerror or err}); carrying on without "
        f"saving it: set {CACHE_ENV} to a folder you can write to, or ask for write access",
        stacklevel=4)


def _atomic_write(path: Path, write, mode: str, *, best_effort: bool = False) -> bool:
    """Write to a temporary file in the same folder, then rename: a reader never sees a
    half-written file, even if the process dies mid-write. ``best_effort``: a file that
    cannot be written (a read-only or full cache) warns and returns False instead of raising.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _new_temporary(path)
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if best_effort and isinstance(err, OSError):
            _cannot_write(path, err)
            return False
        raise
    # a cache folder holds only files written here: every stale temporary goes; elsewhere
    # (a results file next to the user's own files) only those of this very file
    in_cache = _inside(path.parent, cache_dir())
    remove_stale_temporaries(path.parent, target=None if in_cache else path.name)
    return True


def atomic_save(obj, path: Path, *, best_effort: bool = False) -> bool:
    """``torch.save`` atomically; ``best_effort``: warn instead of raising when the file cannot
    be written (returns whether it was)."""
    return _atomic_write(path, lambda f: torch.save(obj, f), "wb", best_effort=best_effort)


def atomic_write_text(path: Path, text: str, *, best_effort: bool = False) -> bool:
    """Write a text file atomically; ``best_effort`` as in :func:`atomic_save`."""
    return _atomic_write(path, lambda f: f.write(text), "w", best_effort=best_effort)


class CorruptCacheFile(RuntimeError):
    """A cache file exists but cannot be read back."""


def _load_failure(err: Exception) -> str:
    """What went wrong in ``torch.load``, in a few words. torch's own message goes on to
    suggest loading with ``weights_only=False``, which would let the file run any code: that
    advice is left out on purpose."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    detail = re.search(r"WeightsUnpickler error:\s*(.*)", text, re.S)
    if detail:  # the file asks for something other than tensors and plain containers
        text = "not a plain tensor file: " + detail.group(1)
        text = re.split(r"\. Please use|\n\s*\n", text)[0]
    else:
        text = re.split(r"(?<=\.)\s|\n", text.strip())[0]
    text = " ".join(text.split()).rstrip(".")
    if "weights_only" in text:
        text = "it holds more than tensors and plain containers"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def safe_load(path: Path):
    """Load a cache file with ``weights_only=True`` (no code runs from the file); a file that
    cannot be read raises :class:`CorruptCacheFile` naming it, so the caller can rebuild it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as err:
        raise CorruptCacheFile(
            f"cache file {path} cannot be read (permission denied): ask its owner to make it "
            f"readable (chmod a+r), or set {CACHE_ENV} to a folder of your own") from err
    except Exception as err:  # truncated, garbage, or written by something else
        raise CorruptCacheFile(
            f"cache file {path} is unreadable ({_load_failure(err)}); "
            "delete it, or it will be rebuilt") from err


_MEMO_ELEMENTS = 1 << 16
"""Tensors this large keep their digest (until they change in place): a dataset's images are
hashed once, however many results are looked up for them."""


def _tensor_digest(tensor: torch.Tensor) -> bytes:
    """The digest of a tensor's dtype, shape and values, kept on the tensor itself for large
    ones and recomputed after any in-place change (torch counts those in ``_version``)."""
    try:
        version = tensor._version
    except RuntimeError:  # an inference-mode tensor counts no versions: never kept
        version = None
    kept = getattr(tensor, "_ssl_teach_digest", None)
    if version is not None and kept is not None and kept[0] == version:
        return kept[1]
    t = tensor.detach().to("cpu").contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
    h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    digest = h.digest()
    if version is not None and tensor.numel() >= _MEMO_ELEMENTS:
        try:
            tensor._ssl_teach_digest = (version, digest)
        except (AttributeError, RuntimeError):
            pass
    return digest


def _feed(h, obj) -> None:
    """Feed ``obj`` into the hash ``h``: tensors by dtype, shape and bytes; modules by their
    state; dataclasses by type and fields; containers item by item; anything else by repr."""
    import dataclasses

    from torch import nn

    if isinstance(obj, torch.Tensor):
        h.update(_tensor_digest(obj))
    elif isinstance(obj, nn.Module):
        h.update(f"M{type(obj).__qualname__}".encode())
        for name, value in obj.state_dict().items():
            h.update(name.encode())
            _feed(h, value)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"D{type(obj).__module__}.{type(obj).__qualname__}".encode())
        for field in dataclasses.fields(obj):
            h.update(field.name.encode())
            _feed(h, getattr(obj, field.name))
    elif isinstance(obj, dict):
        h.update(f"d{len(obj)}".encode())
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"l{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    else:
        h.update(f"V{type(obj).__name__}:{obj!r}".encode())


def fingerprint(*parts) -> str:
    """A stable hash of what a result depends on: tensors (their values), modules (their
    weights and buffers), dataclasses (such as a task and its options), containers and plain
    values. Equal inputs give equal fingerprints; so does the same network loaded again."""
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        _feed(h, part)
    return h.hexdigest()


def cached_json(kind: str, parts, compute, *, cache: bool = True):
    """The JSON-able result of ``compute()``, kept under the cache folder in ``kind/`` by the
    :func:`fingerprint` of ``parts`` (everything the result depends on, including a version
    of the code that computes it). ``cache=False``: neither read nor written. A cached file
    that cannot be read is computed again, with a warning."""
    if not cache:
        return compute()
    path = cache_dir() / kind / f"{fingerprint(*parts)}.json"
    if path.exists():
        try:
            return json.loads(path.read_text())["result"]
        except (ValueError, KeyError, TypeError, OSError) as err:
            warnings.warn(str(CorruptCacheFile(f"cache file {path} is unreadable ({err}); "
                                               "computing it again")), stacklevel=3)
    result = compute()
    atomic_write_text(path, json.dumps({"result": result}), best_effort=True)
    return result
