"""A whole experiment in one call: data -> pretext training -> baselines -> probe -> numbers.

The CLI and the notebooks both use these functions, so a number printed by
``python -m ssl_teach run rotation`` is the number the rotation notebook shows.
"""

from __future__ import annotations

import dataclasses
import time

import torch

from .cache import cached_json
from .data import Dataset, load_dataset
from .finetune import SCRATCH, finetune_downstream
from .preflight import preflight
from .probe import L2_GRID, ProbeResult, probe
from .profiles import Profile, get_profile
from .train import (
    SupervisedTask, Trained, data_fingerprint, pretext_accuracy, select_device, train, untrained,
)

PROBE_VERSION = 3  # 2: validation accuracy per block, the best block chosen on it; 3: 50 L-BFGS
# iterations per fit (probe.MAX_ITER)


def setup(profile: str | Profile = "quick", dataset: str = "scenes", *, seed: int = 0,
          data_dir=None, download: bool = False, device="auto", tasks=(), label_sizes=(),
          needs_labels: bool = False, train_seeds=()) -> tuple[Profile, Dataset]:
    """The profile and the dataset it asks for, at the profile's image size and counts.

    Real datasets are read from ``data_dir`` (else ``$SSL_TEACH_DATA``, else
    ``~/.cache/ssl_teach/datasets``); the network is used only with ``download=True``.
    The pre-flight check (:func:`ssl_teach.preflight.preflight`) runs first on ``device``,
    the seeds and the profile, then on the loaded data for ``tasks``, ``label_sizes`` (images
    per class of labelled subsets) and ``needs_labels``: what would fail fails here, before
    anything trains.
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    preflight(profile=prof, device=device, seeds=(seed, *train_seeds), tasks=tasks)
    data = load_dataset(dataset, seed=seed, data_dir=data_dir, download=download,
                        **prof.dataset_kwargs())
    preflight(data, device=None, tasks=tasks, label_sizes=label_sizes,
              needs_labels=needs_labels)
    return prof, data


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
    """Train a pretext task (a name, made with the profile's task options, or a task object)
    with the profile's budget (and its loader ``workers``, unless given)."""
    task = profile.task(task) if isinstance(task, str) else task  # with the profile's options
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


def probe_cached(trained: Trained, dataset: Dataset, *, device="auto", cache: bool = True,
                 blocks=None) -> ProbeResult:
    """The probe of one trained model on ``dataset`` (every block, or those in ``blocks``),
    cached under the cache folder by what it depends on: the network's weights, the task
    (whose ``probe_inputs`` prepare the images), the dataset's images and labels, the blocks,
    the L2 grid and the device type."""
    def compute() -> dict:
        dataset.require_labels("the probe")
        return dataclasses.asdict(probe(trained.backbone, dataset, device=device, blocks=blocks,
                                        prepare=trained.task.probe_inputs))

    parts = (PROBE_VERSION, L2_GRID, trained.model, trained.task, data_fingerprint(dataset),
             blocks, select_device(device).type)
    return ProbeResult(**cached_json("probes", parts, compute, cache=cache))


STL10_TRAIN_IMAGES = 5000
"""STL-10's labelled training split, which its predefined folds index."""


def stl10_fold_probe(trained: Trained, dataset: Dataset, folds, *, device="auto",
                     seed: int = 0, blocks=None) -> dict[str, dict]:
    """STL-10's own protocol: the linear probe fitted on each predefined training fold alone
    (its L2 chosen on a validation part of that fold) and tested on the whole test split,
    {block: {"mean", "std", "runs"}} over the folds (std: the sample standard deviation), for
    every block or those in ``blocks``.

    ``folds``: :func:`ssl_teach.data.real.read_stl10_folds`, indices into STL-10's training
    images in file order, so ``dataset`` must hold the whole STL-10 train split."""
    from .probe import extract_features, linear_probe

    if dataset.spec.get("name") != "stl10":
        raise ValueError(f"the STL-10 fold protocol needs the stl10 dataset, got "
                         f"{dataset.name!r}: use --dataset stl10")
    n_train = dataset.spec.get("n_train")
    if n_train is not None and n_train < STL10_TRAIN_IMAGES:
        raise ValueError(
            f"the STL-10 folds index all {STL10_TRAIN_IMAGES:,} training images in file order, "
            f"but this dataset holds a subsample of {len(dataset.train_labels):,}: load STL-10 "
            f"with n_train >= {STL10_TRAIN_IMAGES:,} (both profiles do)")
    top = max(int(f.max()) for f in folds)
    if top >= len(dataset.train_labels):
        raise ValueError(f"the STL-10 folds index training image {top}, but the dataset has "
                         f"{len(dataset.train_labels)}: the fold file does not belong to "
                         "these training images")
    dataset.require_labels("the STL-10 fold protocol")
    prepare = trained.task.probe_inputs
    train_f = extract_features(trained.backbone, dataset.train_images, prepare=prepare,
                               device=device)
    test_f = extract_features(trained.backbone, dataset.test_images, prepare=prepare,
                              device=device)
    out = {}
    for block in blocks or train_f:
        runs = [linear_probe(train_f[block][fold], dataset.train_labels[fold], test_f[block],
                             dataset.test_labels, num_classes=dataset.num_classes,
                             seed=seed)["accuracy"] for fold in folds]
        t = torch.tensor(runs)
        out[block] = {"mean": t.mean().item(), "std": t.std().item() if len(runs) > 1 else 0.0,
                      "runs": runs}
    return out


def format_stl10_folds(results: dict[str, dict]) -> str:
    """The fold protocol's table: mean ± std of the linear probe over STL-10's training folds,
    per method and block."""
    blocks = list(next(iter(results.values())))
    runs = len(next(iter(next(iter(results.values())).values()))["runs"])
    head = f"{'STL-10 folds':<14}" + "".join(f"{b:>14}" for b in blocks)
    lines = [f"linear probe on each of STL-10's {runs} training folds, mean ± std on the test "
             "split", head, "-" * len(head)]
    for method, per_block in results.items():
        lines.append(f"{method:<14}" + "".join(
            f"{100 * r['mean']:>7.1f}±{100 * r['std']:.1f}%".rjust(14)
            for r in per_block.values()))
    return "\n".join(lines)


def run(task_name: str, *, profile: str = "quick", dataset: str = "scenes", seed: int = 0,
        device="auto", progress: bool = True, cache: bool = True,
        task_options: dict | None = None, data_dir=None, download: bool = False,
        workers: int | None = None, finetune_sizes=(4, 16), finetune_seeds=(0, 1, 2),
        stl10_folds: bool = False) -> dict:
    """Train ``task_name`` and both baselines, probe all three, fine-tune the task's backbone
    and the random one (from scratch) with ``finetune_sizes`` labels per class over
    ``finetune_seeds`` subsets (``finetune_sizes=()``: no fine-tuning), return the results
    dict (the JSON that ``python -m ssl_teach run`` writes). ``stl10_folds``: also STL-10's
    fold protocol for all three (:func:`stl10_fold_probe`), under "stl10_folds"."""
    seconds = {}
    t0 = time.perf_counter()
    folds = None
    if stl10_folds:  # fail before training, not after
        if dataset != "stl10":
            raise ValueError(f"--stl10-folds is STL-10's evaluation protocol; it needs "
                             f"--dataset stl10, got {dataset!r}")
        from .data.real import read_stl10_folds

        folds = read_stl10_folds(data_dir)
    # the profile's options for the task (the full profile's are the papers'), then the caller's
    task = (get_profile(profile) if isinstance(profile, str) else profile).task(
        task_name, **(task_options or {}))
    # the probe and the supervised baseline need labels: fail before training, not after
    prof, data = setup(profile, dataset, seed=0, data_dir=data_dir, download=download,
                       device=device, tasks=[task], needs_labels=True, train_seeds=[seed])
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
    fold_results = {}
    if folds is not None:
        t0 = time.perf_counter()
        fold_results = {"stl10_folds": {name: stl10_fold_probe(t, data, folds, device=device)
                                        for name, t in methods.items()}}
        seconds["stl10_folds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    downstream = finetune_downstream({task.name: model, SCRATCH: base[SCRATCH]}, data, prof,
                                     sizes=finetune_sizes, seeds=finetune_seeds,
                                     device=device, cache=cache, progress=progress)
    seconds["finetune"] = time.perf_counter() - t0

    # Measured inside the training loop (stored in the checkpoint, so also for a cache hit).
    seconds["pretext_batch_total"] = model.seconds.get("batch", float("nan"))
    seconds["train_step_total"] = model.seconds.get("step", float("nan"))
    return {
        "task": task_name, "dataset": dataset, "profile": prof.name, "seed": seed,
        "data": data.spec,
        "device": str(torch.device(device)) if device != "auto" else "auto",
        "from_cache": model.from_cache,
        "pretext": {"accuracy": acc, "chance": task.chance,  # num_classes None: pixels
                    "num_classes": getattr(task, "num_classes", None)},
        "probe": {
            "linear": {name: r.linear for name, r in probes.items()},
            "knn": {name: r.knn for name, r in probes.items()},
            "val": {name: r.val for name, r in probes.items()},
            "best_block": {name: r.best_block for name, r in probes.items()},
        },
        "downstream": downstream,
        **fold_results,
        "batch_share": seconds["pretext_batch_total"] / max(
            seconds["pretext_batch_total"] + seconds["train_step_total"], 1e-9),
        "seconds": seconds,
    }
