"""Fine-tuning: the second downstream protocol, and the one the papers' headline numbers use.

The probe asks what frozen features already hold; fine-tuning asks the learner's question:
*does starting from a pretext model learn the real task from fewer labels?* One recipe,
:func:`finetune`, for every initialisation:

1. the backbone starts from a pretext model's weights, from the supervised baseline's (the
   reference), or from its random initialisation -- fine-tuning the random backbone *is*
   supervised training from scratch, with exactly the same recipe;
2. a fresh linear head on the last block, pooled to the probe's grid and standardised as the
   probe's features are (:class:`FinetuneModel`); every layer is trained;
3. a fixed number of optimiser steps (not passes over the data: a few labels would otherwise
   get a few steps), batches drawn in seeded epochs (no repeats within an epoch);
4. augmentation: random horizontal flips and random translations (zero-pad, then crop back);
5. SGD with Nesterov momentum and a one-cycle schedule (warm-up, then cosine decay);
6. the final model is the step, among evaluations every ``eval_every`` steps, with the best
   accuracy on a validation part carved from the labelled images themselves
   (:func:`ssl_teach.probe.validation_split`); the test split only reports. With fewer than
   :data:`~ssl_teach.probe.MIN_VALIDATION_PER_CLASS` labels in some class nothing is held out
   and the rule, fixed in advance, is to keep the last step.

Only the initialisation differs between the rows of a comparison. As in the probe, a pretext
model sees whole images as its task says (``task.probe_inputs``: e.g. each image normalised
by its own mean and std for the patch tasks). Doersch et al. 2015 and Noroozi & Favaro 2016
report fine-tuned numbers on PASCAL VOC; Gidaris et al. 2018 train classifiers on their
rotation network with a few CIFAR-10 labels per class (their semi-supervised table).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import time
import warnings

import torch
from torch import nn

from .cache import CorruptCacheFile, atomic_write_text, cache_dir, config_key
from .data import Dataset, to_float
from .probe import labelled_subset, pooled_grid, validation_split
from .train import (
    Trained, _grad_scaler, _index_batches, _optimiser_step, autocast_dtype, check_precision,
    data_fingerprint, precision_name, select_device,
)

SCRATCH = "random"
"""The method whose fine-tuning is training from scratch: the random initialisation."""

FINETUNE_VERSION = 1
"""Bumped whenever the recipe's code changes what a run gives (part of every cache key)."""


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning recipe: the same for every initialisation at a given label count."""

    steps: int = 150  # optimiser steps, whatever the number of labelled images
    batch_size: int = 32  # labelled images per step
    lr: float = 0.02  # peak learning rate of the one-cycle schedule
    weight_decay: float = 5e-4  # on weights of convolutions and linear layers only
    warmup: float = 0.15  # share of the steps spent warming up
    flip: bool = True  # random horizontal flips
    translate: float = 0.125  # random translations up to this share of the image side
    eval_every: int = 25  # validation accuracy every this many steps (and at the last one)
    val_share: float = 0.25  # share of each class's labelled images held out for validation
    val_max_per_class: int = 25  # at most this many validation images per class
    head_grid: int = 0  # the head pools the last block to this grid (0: the probe's grid)
    head_norm: bool = True  # standardise the head's inputs (BatchNorm without affine)
    precision: str = "auto"  # as in training (see ssl_teach.train); the profile's by recipe()

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError("fine-tuning needs steps, batch_size and eval_every >= 1, got "
                             f"{self.steps}, {self.batch_size}, {self.eval_every}")
        if not 0 <= self.translate < 0.5:
            raise ValueError(f"translate is a share of the image side in [0, 0.5), "
                             f"got {self.translate}")
        if not 0 <= self.val_share < 1:
            raise ValueError(f"val_share must be in [0, 1), got {self.val_share}")
        check_precision(self.precision)


RECIPES = {
    # 150 steps of 32 images: 40 passes over 16 labels per class (less the validation part),
    # one over the whole labelled split. The learning rate had the best validation accuracy
    # of 0.01, 0.02 and 0.05 from random init and from rotation (0.1 diverged).
    "quick": FinetuneConfig(),
    # the full profile (a GPU, a real dataset): 1,500 steps of 256 images, 8 passes over
    # CIFAR-10's 50,000 labelled images
    "full": FinetuneConfig(steps=1_500, batch_size=256, lr=0.05, eval_every=100,
                           val_max_per_class=100),
}
"""The recipe of each profile (by the profile's name)."""


def recipe(profile) -> FinetuneConfig:
    """The fine-tuning recipe of ``profile`` (a :class:`~ssl_teach.profiles.Profile` or its
    name), in the profile's precision; a profile without its own recipe gets the quick one."""
    name = profile if isinstance(profile, str) else profile.name
    config = RECIPES.get(name, RECIPES["quick"])
    precision = getattr(profile, "precision", config.precision)
    return config if precision == config.precision else dataclasses.replace(
        config, precision=precision)


# --- augmentation: draw the parameters, then apply them (a pure function) ---------------------


def sample_augmentation(n: int, *, size: int, config: FinetuneConfig,
                        generator: torch.Generator) -> dict:
    """Random augmentation parameters of ``n`` images of side ``size``: "flip" (bool, N) and
    the crop offsets "dy", "dx" (int, N) into the image padded by ``pad`` on every side."""
    pad = translation_pad(size, config)
    flip = torch.rand(n, generator=generator) < 0.5 if config.flip else torch.zeros(n, dtype=bool)
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=generator)
    return {"flip": flip, "dy": dy, "dx": dx, "pad": pad}


def translation_pad(size: int, config: FinetuneConfig) -> int:
    """Pixels of zero padding on each side: the largest translation of the recipe."""
    return int(round(config.translate * size))


def augment(images: torch.Tensor, params: dict) -> torch.Tensor:
    """Flip the images where ``params["flip"]``, pad them with zeros by ``params["pad"]`` and
    crop back to their size at offsets (dy, dx): a translation by (pad - dy, pad - dx) pixels.
    (N, C, H, W) float -> (N, C, H, W); offsets (pad, pad) and no flip give the images back."""
    images = torch.where(params["flip"].to(images.device).view(-1, 1, 1, 1),
                         images.flip(-1), images)
    pad = params["pad"]
    if pad == 0:
        return images
    n, _, h, w = images.shape
    padded = nn.functional.pad(images, (pad, pad, pad, pad))
    rows = params["dy"].to(images.device).view(n, 1) + torch.arange(h, device=images.device)
    cols = params["dx"].to(images.device).view(n, 1) + torch.arange(w, device=images.device)
    batch = torch.arange(n, device=images.device).view(n, 1, 1)
    # (N, H, W, C) by advanced indexing, back to (N, C, H, W)
    return padded.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)].permute(
        0, 3, 1, 2).contiguous()


# --- the recipe ------------------------------------------------------------------------------


@dataclasses.dataclass
class FinetuneResult:
    """One fine-tuning run: test accuracy of the model chosen on validation, and the choice."""

    accuracy: float  # test accuracy of the chosen step's model
    step: int  # the chosen step (the last one when there is no validation part)
    val_accuracy: float | None  # its validation accuracy (None: no validation part)
    history: dict  # at every evaluation: "step", "loss" (mean training loss since the last
    # evaluation) and "val" (validation accuracy; None without a validation part)
    n_train: int  # labelled images trained on
    n_val: int  # labelled images held out for validation
    seconds: float  # wall-clock time of the run (0 when it came from the cache)
    from_cache: bool = False


def _subset_id(indices: torch.Tensor) -> str:
    """A short hash of which labelled images a run uses."""
    return hashlib.sha256(indices.to(torch.int64).numpy().tobytes()).hexdigest()[:16]


def run_key(init: Trained, dataset: Dataset, indices: torch.Tensor, config: FinetuneConfig,
            seed: int, amp: torch.dtype | None = None) -> str:
    """Cache key of a fine-tuning run: everything that decides its result (``amp``: the
    autocast type the recipe's precision resolved to on the device)."""
    return config_key({
        "finetune": FINETUNE_VERSION, "init": init.config,
        "inputs": [init.task.name, init.task.options()], "data": dataset.spec,
        "content": data_fingerprint(dataset),
        "subset": _subset_id(indices), "recipe": dataclasses.asdict(config), "seed": seed,
        "arithmetic": precision_name(amp)})


class FinetuneModel(nn.Module):
    """Backbone + a linear head on its last block: average-pooled to a ``grid`` x ``grid``
    grid and flattened (as the probe does), standardised by a BatchNorm without learned scale
    and shift (the probe standardises its features too), then one linear layer."""

    def __init__(self, backbone: nn.Module, num_classes: int, *, grid: int, norm: bool = True):
        super().__init__()
        features = backbone.out_channels * grid * grid
        self.backbone = backbone
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(grid), nn.Flatten(),
            nn.BatchNorm1d(features, affine=False) if norm else nn.Identity(),
            nn.Linear(features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1])


def initial_model(init: Trained, num_classes: int, *, image_size: int,
                  config: FinetuneConfig = FinetuneConfig(), seed: int = 0) -> nn.Module:
    """The model a fine-tuning run starts from: a copy of ``init``'s backbone (its weights
    and BatchNorm statistics) and a fresh head (:class:`FinetuneModel`) initialised from
    ``seed``. The head's grid is the probe's for the last block of images of ``image_size``
    unless the recipe sets one."""
    side = image_size // 2 ** len(init.backbone.blocks)
    grid = config.head_grid or pooled_grid(init.backbone.out_channels, max(side, 1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        backbone = copy.deepcopy(init.backbone)
        return FinetuneModel(backbone, num_classes, grid=grid, norm=config.head_norm)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, prepare,
             device: torch.device, batch_size: int = 256, amp: torch.dtype | None = None
             ) -> float:
    """Accuracy of ``model`` (in eval mode: BatchNorm uses its running statistics), under
    autocast to ``amp`` when given."""
    if len(images) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        x = prepare(to_float(images[i:i + batch_size].to(device)))
        if device.type in ("cpu", "cuda"):
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext():
            logits = model(x)
        correct += (logits.argmax(1) == labels[i:i + batch_size].to(device)).sum().item()
    model.train(was_training)
    return correct / len(images)


def finetune(init: Trained, dataset: Dataset, indices: torch.Tensor | None = None, *,
             config: FinetuneConfig = FinetuneConfig(), seed: int = 0, device="auto",
             cache: bool = True, progress: bool = False, desc: str | None = None
             ) -> FinetuneResult:
    """Fine-tune ``init``'s backbone with a fresh linear head on the labelled train images
    ``indices`` (default: all of them); test accuracy of the model chosen on validation.

    ``init`` is a :class:`~ssl_teach.train.Trained`: a pretext model, the supervised baseline,
    or the untrained backbone (``baselines(...)["random"]``: training from scratch). Its
    weights are copied, never changed. ``seed`` decides the validation part, the head's
    initialisation, the batch order and the augmentation: the same seed gives the same run.
    Results are cached as JSON under the cache folder (``cache=False``: neither read nor
    written).
    """
    dataset.require_labels("fine-tuning")
    if indices is None:
        indices = torch.arange(len(dataset.train_labels))
    indices = torch.as_tensor(indices, dtype=torch.long)
    if len(indices) == 0:
        raise ValueError("fine-tuning needs at least one labelled image; got an empty subset")
    dev = select_device(device)
    amp = autocast_dtype(config.precision, dev)
    path = cache_dir() / "finetune" / (
        f"{init.task.name}-{run_key(init, dataset, indices, config, seed, amp)}.json")
    if cache and path.exists():
        try:
            return FinetuneResult(**{**json.loads(path.read_text()), "from_cache": True})
        except (ValueError, TypeError) as err:
            warnings.warn(str(CorruptCacheFile(f"fine-tuning cache {path} is unreadable "
                                               f"({err}); fine-tuning again")), stacklevel=2)
    start = time.perf_counter()
    labels = dataset.train_labels[indices]
    tr, va = validation_split(labels, share=config.val_share,
                              max_per_class=config.val_max_per_class, seed=seed)
    train_idx, val_idx = indices[tr], indices[va]
    channels_last = dev.type in ("cpu", "cuda")
    scaler = _grad_scaler() if amp == torch.float16 else None
    model = initial_model(init, dataset.num_classes, image_size=dataset.image_size,
                          config=config, seed=seed).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # BatchNorm and biases
    opt = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=config.lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps,
                                                pct_start=config.warmup, anneal_strategy="cos")
    prepare = init.task.probe_inputs
    images = dataset.train_images[train_idx]
    targets_all = dataset.train_labels[train_idx]
    val_images, val_labels = dataset.train_images[val_idx], dataset.train_labels[val_idx]
    order = _index_batches(len(images), config.batch_size,
                           torch.Generator().manual_seed(10_009 * seed + 1))
    history = {"step": [], "loss": [], "val": []}
    best = None  # (val accuracy, step, state) of the chosen model
    losses = []
    model.train()
    steps = range(config.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=desc or f"fine-tuning {init.task.name}", unit="step")
    for step in steps:
        idx = next(order)
        g = torch.Generator().manual_seed((seed + 1) * 2**32 + step)
        x = to_float(images.index_select(0, idx))
        x = augment(x, sample_augmentation(len(idx), size=x.shape[-1], config=config,
                                           generator=g))
        x = prepare(x).to(dev)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = targets_all.index_select(0, idx).to(dev)
        with torch.autocast(dev.type, dtype=amp) if amp else contextlib.nullcontext():
            loss = nn.functional.cross_entropy(model(x).float(), y)
        _optimiser_step(loss, opt, scaler)
        sched.step()
        losses.append(loss.detach())
        done = step + 1
        if done % config.eval_every == 0 or done == config.steps:
            history["step"].append(done)
            history["loss"].append(torch.stack(losses).mean().item())
            losses = []
            acc = None
            if len(val_idx):
                acc = evaluate(model, val_images, val_labels, prepare=prepare, device=dev,
                               amp=amp)
                if best is None or acc >= best[0]:  # ties go to the later, longer-trained step
                    best = (acc, done, copy.deepcopy(model.state_dict()))
            history["val"].append(acc)
    if best is None:  # no validation part: the rule is to keep the last step
        best = (None, config.steps, None)
    else:
        model.load_state_dict(best[2])
    test_acc = evaluate(model, dataset.test_images, dataset.test_labels, prepare=prepare,
                        device=dev, amp=amp)
    result = FinetuneResult(accuracy=test_acc, step=best[1], val_accuracy=best[0],
                            history=history, n_train=len(train_idx), n_val=len(val_idx),
                            seconds=time.perf_counter() - start)
    if cache:
        atomic_write_text(path, json.dumps({k: v for k, v in dataclasses.asdict(result).items()
                                            if k != "from_cache"}), best_effort=True)
    return result


def summary(runs: list[float]) -> dict:
    """{"mean", "std", "runs"} of a list of accuracies (std 0 for a single run)."""
    t = torch.tensor(runs, dtype=torch.float64)
    return {"mean": t.mean().item(), "std": t.std().item() if len(runs) > 1 else 0.0,
            "runs": list(runs)}


def finetune_label_efficiency(init: Trained, dataset: Dataset, *, sizes=(4, 16),
                              seeds=(0, 1, 2), config: FinetuneConfig = FinetuneConfig(),
                              device="auto", cache: bool = True, progress: bool = False,
                              name: str | None = None) -> dict:
    """Fine-tuned test accuracy with ``size`` labels per class, over one labelled subset per
    seed: {size: {"mean", "std", "runs", "steps", "val"}} ("steps": each run's chosen step).

    With "all" labels every seed uses the whole labelled split; the seed still changes the
    validation part, the head's initialisation, the batch order and the augmentation."""
    out = {}
    for size in sizes:
        results = []
        for seed in seeds:
            idx = labelled_subset(dataset.train_labels, size, seed=seed,
                                  num_classes=dataset.num_classes)
            results.append(finetune(
                init, dataset, idx, config=config, seed=seed, device=device, cache=cache,
                progress=progress,
                desc=f"fine-tuning {name or init.task.name}, {size} labels/class, seed {seed}"))
        out[str(size)] = {**summary([r.accuracy for r in results]),
                          "steps": [r.step for r in results],
                          "val": [r.val_accuracy for r in results]}
    return out


def difference(a: dict, b: dict) -> tuple[float, float]:
    """(a's mean minus b's, the spread of that difference: sqrt(std_a² + std_b²)) of two
    {"mean", "std", ...} summaries; a difference larger than its spread is the course's rule for
    "one beats the other" (:func:`pretraining_helps`, :func:`ssl_teach.compare.rank_tasks`)."""
    return a["mean"] - b["mean"], math.hypot(a["std"], b["std"])


def pretraining_helps(finetuned: dict, sizes, *, scratch: str = SCRATCH) -> dict:
    """Where fine-tuning from a pretrained backbone beats fine-tuning from scratch.

    ``finetuned`` maps a method to its {size: {"mean", "std", ...}}. Pretraining *helps* at a
    label count when the mean gain over from-scratch is larger than the spread of that
    difference, sqrt(std_method² + std_scratch²) (the stds over the labelled subsets).
    "up_to" is the largest label count up to which it helps at every count measured (None: not
    even at the smallest). Returns {method: {"up_to", "helps": {size: bool}, "gain": {size},
    "spread": {size}}} for every method but ``scratch``."""
    base = finetuned[scratch]
    out = {}
    for name, ft in finetuned.items():
        if name == scratch:
            continue
        helps, gain, spread = {}, {}, {}
        for s in map(str, sizes):
            if s not in ft or s not in base:
                continue
            gain[s], spread[s] = difference(ft[s], base[s])
            helps[s] = gain[s] > spread[s]
        up_to = None
        for s in helps:  # in increasing order of label counts
            if not helps[s]:
                break
            up_to = s if s == "all" else int(s)
        out[name] = {"up_to": up_to, "helps": helps, "gain": gain, "spread": spread}
    return out


def counts_that_help(helps: dict) -> list[str]:
    """The label counts at which one method's entry of :func:`pretraining_helps` beats from
    scratch beyond the spread, in increasing order (they may start above the fewest)."""
    return [s for s, helped in helps.get("helps", {}).items() if helped]


def available_sizes(dataset: Dataset, sizes) -> tuple[list, list]:
    """(label counts ``dataset`` can serve, those it cannot): a count per class above the
    smallest class's number of labelled images cannot be drawn."""
    fewest = int(torch.bincount(dataset.train_labels, minlength=dataset.num_classes).min())
    ok = [s for s in sizes if s == "all" or s <= fewest]
    return ok, [s for s in sizes if s not in ok]


def finetune_downstream(methods: dict, dataset: Dataset, profile, *, sizes=(4, 16),
                        seeds=(0, 1, 2), device="auto", cache: bool = True,
                        progress: bool = False) -> dict:
    """Fine-tune each of ``methods`` ({name: Trained}, one of them :data:`SCRATCH`) with the
    profile's recipe at ``sizes`` labels per class: the ``downstream`` part of a run's JSON,
    {"finetune": {method: {size: {"mean", "std", "runs", ...}}}, "pretraining_helps",
    "recipe", "seeds", "skipped_sizes" (counts the dataset has too few labels for)}."""
    config = recipe(profile)
    sizes, skipped = available_sizes(dataset, list(sizes))
    out = {name: finetune_label_efficiency(
        model, dataset, sizes=sizes, seeds=seeds, config=config, device=device, cache=cache,
        progress=progress, name="from scratch" if name == SCRATCH else name)
        for name, model in methods.items()} if sizes else {}
    return {"finetune": out,
            "pretraining_helps": pretraining_helps(out, sizes) if SCRATCH in out else {},
            "recipe": dataclasses.asdict(config), "seeds": list(seeds),
            "skipped_sizes": [str(s) for s in skipped]}


def format_downstream(downstream: dict) -> str:
    """The ``downstream`` part of a run (:func:`finetune_downstream`) as plain text: fine-tuned
    test accuracy per method and label count (mean ± std over the labelled subsets), each
    method's gain over from scratch with its spread, and where pretraining helps ("" when
    nothing was fine-tuned)."""
    ft = downstream.get("finetune") or {}
    if not ft:
        return ""
    r = downstream["recipe"]
    sizes = list(next(iter(ft.values())))
    lines = [f"fine-tuned, all layers ({r['steps']} steps of {r['batch_size']} images; labelled "
             f"subsets over seeds {downstream['seeds']}; final step chosen on validation)"]
    head = f"{'labels/class':<22}" + "".join(f"{s:>14}" for s in sizes)
    lines += [head, "-" * len(head)]
    for method, table in ft.items():
        label = "random = scratch" if method == SCRATCH else method
        lines.append(f"{label:<22}" + "".join(
            f"{100 * table[s]['mean']:>7.1f}±{100 * table[s]['std']:<4.1f}%" for s in sizes))
    for method, h in downstream.get("pretraining_helps", {}).items():
        up = h["up_to"]
        gains = ", ".join(f"{100 * h['gain'][s]:+.1f} ± {100 * h['spread'][s]:.1f} points at {s}"
                          for s in h["gain"])
        later = counts_that_help(h)
        if up is not None:
            verdict = f"up to {up} labels per class"
        elif later:  # not at the fewest labels, but at some larger count
            verdict = (f"at {', '.join(later)} labels per class, but not at "
                       f"{next(iter(h['helps']))}, the fewest measured")
        else:
            verdict = "at no label count measured"
        lines.append(f"fine-tuning from {method} vs from scratch: {gains}; it beats from "
                     f"scratch by more than the spread {verdict}")
    if downstream.get("skipped_sizes"):
        lines.append(f"(not enough labelled images for {', '.join(downstream['skipped_sizes'])} "
                     "labels per class)")
    return "\n".join(lines)
