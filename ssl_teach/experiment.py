"""A whole experiment in one call: data -> pretext training -> baselines -> probe -> numbers.

The CLI and the notebooks both use these functions, so a number printed by
``python -m ssl_teach run rotation`` is the number the rotation notebook shows.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings

import torch

from .cache import CorruptCacheFile, atomic_write_text, cache_dir, config_key
from .data import Dataset, load_dataset
from .pretext import get_task
from .probe import L2_GRID, ProbeResult, probe
from .profiles import Profile, get_profile
from .train import SupervisedTask, Trained, pretext_accuracy, train, untrained

PROBE_VERSION = 1


def setup(profile: str | Profile = "quick", dataset: str = "scenes", *, seed: int = 0,
          data_dir=None, download: bool = False) -> tuple[Profile, Dataset]:
    """The profile and the dataset it asks for, at the profile's image size and counts.

    Real datasets are read from ``data_dir`` (else ``$SSL_TEACH_DATA``, else
    ``~/.cache/ssl_teach/datasets``); the network is used only with ``download=True``.
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    return prof, load_dataset(dataset, seed=seed, data_dir=data_dir, download=download,
                              **prof.dataset_kwargs())


def check_image_size(task, dataset: Dataset) -> None:
    """Raise a ValueError when ``dataset``'s images are smaller than ``task`` can work with."""
    need = getattr(task, "min_image_size", 1)
    if dataset.image_size < need:
        raise ValueError(
            f"pretext task {task.name!r} needs images of at least {need}x{need} pixels, but "
            f"dataset {dataset.name!r} is loaded at {dataset.image_size}x{dataset.image_size}: "
            f"load it at a larger size (a profile with image_size >= {need}, or "
            f"load_dataset(..., size={need}))")


def pretrain(task, dataset: Dataset, profile: Profile, *, seed: int = 0, device="auto",
             progress: bool = True, cache: bool = True, workers: int | None = None
             ) -> Trained:
    """Train a pretext task (a name or a task object) with the profile's budget (and its
    loader ``workers``, unless given)."""
    task = get_task(task) if isinstance(task, str) else task
    check_image_size(task, dataset)
    return train(task, dataset, profile.train_config(task.name, seed=seed), device=device,
                 progress=progress, cache=cache,
                 workers=profile.workers if workers is None else workers)


def baselines(dataset: Dataset, profile: Profile, *, seed: int = 0, device="auto",
              progress: bool = True, cache: bool = True, workers: int | None = None
              ) -> dict[str, Trained]:
    """The two references of every probe table, on the same backbone and budget:
    ``random`` (the untrained backbone) and ``supervised`` (trained on the labels)."""
    dataset.require_labels("the supervised baseline")
    sup = SupervisedTask(num_classes=dataset.num_classes)
    config = profile.train_config(None, seed=seed)
    return {"random": untrained(sup, dataset, config),
            "supervised": train(sup, dataset, config, device=device, progress=progress,
                                cache=cache, desc="training supervised baseline",
                                workers=profile.workers if workers is None else workers)}


def probe_cached(trained: Trained, dataset: Dataset, *, device="auto", cache: bool = True
                 ) -> ProbeResult:
    """The probe of one trained model, cached next to its checkpoint (same key rules)."""
    key = config_key({"probe": PROBE_VERSION, "model": trained.config, "l2": L2_GRID,
                      "inputs": [trained.task.name, trained.task.options()]})
    path = cache_dir() / "probes" / f"{trained.task.name}-{key}.json"
    if cache and path.exists():
        try:
            return ProbeResult(**json.loads(path.read_text()))
        except (ValueError, TypeError) as err:
            warnings.warn(str(CorruptCacheFile(f"probe cache {path} is unreadable ({err}); "
                                               "probing again")), stacklevel=2)
    dataset.require_labels("the probe")
    result = probe(trained.backbone, dataset, prepare=trained.task.probe_inputs, device=device)
    if cache:
        atomic_write_text(path, json.dumps(dataclasses.asdict(result)))
    return result


def run(task_name: str, *, profile: str = "quick", dataset: str = "scenes", seed: int = 0,
        device="auto", progress: bool = True, cache: bool = True,
        task_options: dict | None = None, data_dir=None, download: bool = False,
        workers: int | None = None) -> dict:
    """Train ``task_name`` and both baselines, probe all three, return the results dict
    (the JSON that ``python -m ssl_teach run`` writes)."""
    seconds = {}
    t0 = time.perf_counter()
    task = get_task(task_name, **(task_options or {}))
    prof, data = setup(profile, dataset, seed=0, data_dir=data_dir, download=download)
    data.require_labels("the probe of `run`")  # fail before training, not after
    check_image_size(task, data)
    seconds["data"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = pretrain(task, data, prof, seed=seed, device=device, progress=progress, cache=cache,
                     workers=workers)
    seconds["pretext_train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = baselines(data, prof, seed=seed, device=device, progress=progress, cache=cache,
                     workers=workers)
    seconds["baselines_train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    acc = pretext_accuracy(model, data, device=device)
    seconds["pretext_eval"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    methods = {task.name: model, **base}
    probes = {name: probe_cached(t, data, device=device, cache=cache)
              for name, t in methods.items()}
    seconds["probe"] = time.perf_counter() - t0

    # Measured inside the training loop (stored in the checkpoint, so also for a cache hit).
    seconds["pretext_batch_total"] = model.seconds.get("batch", float("nan"))
    seconds["train_step_total"] = model.seconds.get("step", float("nan"))
    return {
        "task": task_name, "dataset": dataset, "profile": prof.name, "seed": seed,
        "data": data.spec,
        "device": str(torch.device(device)) if device != "auto" else "auto",
        "from_cache": model.from_cache,
        "pretext": {"accuracy": acc, "chance": task.chance, "num_classes": task.num_classes},
        "probe": {
            "linear": {name: r.linear for name, r in probes.items()},
            "knn": {name: r.knn for name, r in probes.items()},
            "best_block": {name: r.best_block for name, r in probes.items()},
        },
        "batch_share": seconds["pretext_batch_total"] / max(
            seconds["pretext_batch_total"] + seconds["train_step_total"], 1e-9),
        "seconds": seconds,
    }
