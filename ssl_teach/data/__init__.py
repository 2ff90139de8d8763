"""Datasets: one entry point, :func:`load_dataset`, for the embedded scenes and real datasets.

Every dataset gives the same four things: unlabeled images for pretext training, and labelled
train/test splits for the probe. Images are stored as uint8 tensors (N, C, H, W); use
:func:`to_float` to get floats in [0, 1] for a batch.

``scenes`` (the default) is rendered from a seed and needs no files. The real datasets
(``cifar10``, ``cifar100``, ``stl10``, ``fashion-mnist``, ``mnist``, ``folder``) are read from
the data folder: the ``data_dir`` argument, else ``$SSL_TEACH_DATA``, else
``~/.cache/ssl_teach/datasets``, in torchvision's layout; the network is used only with
``download=True``. See :mod:`ssl_teach.data.real`. A file or folder that cannot be used raises
:class:`DataError` (a ValueError) that names it, says what is wrong and how to fix it.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch

from ..cache import CorruptCacheFile, atomic_save, cache_dir, config_key, safe_load
from .scenes import CLASS_NAMES as SCENE_CLASSES
from .real import DATA_ENV, REAL_DATASETS, DataError, MissingDataError, data_root, load_real
from .scenes import SceneConfig, balanced_labels, render_scenes

DATASETS = ("scenes", *REAL_DATASETS)
"""Every dataset by the name the CLI and the notebooks use."""

__all__ = ["DATASETS", "DATA_ENV", "DataError", "Dataset", "MissingDataError", "data_root",
           "load_dataset", "to_float"]


@dataclasses.dataclass
class Dataset:
    """Unlabeled images for the pretext task plus labelled train/test splits for the probe."""

    name: str
    unlabeled: torch.Tensor  # uint8 (N, C, H, W)
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    spec: dict  # everything that identifies the data (part of every checkpoint's cache key)

    @property
    def channels(self) -> int:
        return self.unlabeled.shape[1]

    @property
    def image_size(self) -> int:
        return self.unlabeled.shape[-1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labelled(self) -> bool:
        """Whether there are labelled train and test images (a flat image folder has none)."""
        return len(self.train_labels) > 0 and len(self.test_labels) > 0

    def require_labels(self, purpose: str = "the probe") -> None:
        """Raise a ValueError that explains why ``purpose`` cannot run without labels."""
        if not self.labelled:
            raise ValueError(
                f"{purpose} needs labelled images, but dataset {self.name!r} has "
                f"{len(self.train_labels)} labelled train and {len(self.test_labels)} labelled "
                "test images. A flat folder of images is for pretext training only; for the "
                "probe, sort the images into one subfolder per class (at least five images "
                "in all, a fifth of which become the test split).")

    def __repr__(self):
        return (f"Dataset({self.name!r}: {len(self.unlabeled)} unlabeled, "
                f"{len(self.train_images)} train / {len(self.test_images)} test labelled, "
                f"{self.channels}x{self.image_size}x{self.image_size}, "
                f"{self.num_classes} classes)")


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (float input is returned unchanged)."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


def like(images: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1], computed from ``original``, back in ``original``'s type: uint8
    rounded (and clamped to 0..255), float in ``original``'s float type."""
    if original.dtype == torch.uint8:
        return (images * 255).round().clamp(0, 255).to(torch.uint8)
    return images.to(original.dtype)


def load_dataset(name: str = "scenes", *, size: int = 64, n_unlabeled: int | None = 10_000,
                 n_train: int | None = 5_000, n_test: int | None = 2_000, seed: int = 0,
                 scene_config: SceneConfig | None = None, cache: bool = True,
                 data_dir=None, download: bool = False) -> Dataset:
    """Load a dataset by name: unlabeled pool plus labelled train/test splits.

    ``scenes`` (the default) is rendered from ``seed`` and cached under the cache folder, so
    the second call is instant; the three parts are drawn from separate seeds.

    Real datasets are read from ``data_dir`` (else ``$SSL_TEACH_DATA``, else
    ``~/.cache/ssl_teach/datasets``), resized to ``size`` and subsampled to the counts by a
    permutation seeded with ``seed`` (None, or more than there are: all). Missing files raise
    :class:`MissingDataError` unless ``download=True`` lets torchvision fetch them; damaged
    files raise :class:`DataError`. ``data_dir`` and ``download`` are ignored for the scenes
    (with a warning: they are rendered, not read).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if name != "scenes":
        return _load_real(name, size=size, n_unlabeled=n_unlabeled, n_train=n_train,
                          n_test=n_test, seed=seed, data_dir=data_dir, download=download)
    ignored = [what for what, given in (("--data-dir / DATA_DIR", data_dir is not None),
                                        ("--download / DOWNLOAD", download)) if given]
    if ignored:
        warnings.warn(f"{' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} "
                      "ignored for the embedded scenes, which are rendered, not read from "
                      f"files; they apply to the real datasets ({', '.join(REAL_DATASETS)})",
                      stacklevel=2)
    for label, n in (("n_unlabeled", n_unlabeled), ("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{label} must be a positive int, got {n!r}")
    config = scene_config or SceneConfig(size=size)
    if scene_config is not None and scene_config.size != size and size != 64:
        raise ValueError(f"size={size} disagrees with scene_config.size={scene_config.size}")
    spec = {"name": "scenes", "scene": dataclasses.asdict(config), "n_unlabeled": n_unlabeled,
            "n_train": n_train, "n_test": n_test, "seed": seed, "version": 1}
    path = cache_dir() / "data" / f"scenes-{config_key(spec)}.pt"
    parts = None
    if cache and path.exists():
        try:
            parts = safe_load(path)
        except CorruptCacheFile as err:
            warnings.warn(f"{err}; rendering the scenes again", stacklevel=2)
    if parts is None:
        parts = {}
        for i, (part, n) in enumerate((("unlabeled", n_unlabeled), ("train", n_train),
                                       ("test", n_test))):
            labels = balanced_labels(n, seed=seed * 7919 + 2 * i)
            parts[part] = render_scenes(labels, seed=seed * 7919 + 2 * i + 1, config=config)
            parts[part + "_labels"] = labels
        if cache:
            atomic_save(parts, path, best_effort=True)
    return Dataset(name="scenes", unlabeled=parts["unlabeled"],
                   train_images=parts["train"], train_labels=parts["train_labels"],
                   test_images=parts["test"], test_labels=parts["test_labels"],
                   class_names=SCENE_CLASSES, spec=spec)


def _load_real(name: str, *, size, n_unlabeled, n_train, n_test, seed, data_dir, download
               ) -> Dataset:
    """A real dataset (see :mod:`ssl_teach.data.real`) as a :class:`Dataset`."""
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive int (or None for the native size), "
                         f"got {size!r}")
    for label, n in (("n_unlabeled", n_unlabeled), ("n_train", n_train), ("n_test", n_test)):
        if n is not None and (not isinstance(n, int) or n < 1):
            raise ValueError(f"{label} must be a positive int or None (all), got {n!r}")
    parts = load_real(name, size=size, n_unlabeled=n_unlabeled, n_train=n_train,
                      n_test=n_test, seed=seed, data_dir=data_dir, download=download)
    return Dataset(name=name, **parts)
