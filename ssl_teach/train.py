"""One training loop for every pretext task and for the supervised baseline.

``train(task, dataset, config)`` builds the backbone and the task's head, draws batches from
the images with an explicit seeded generator, trains with SGD and a one-cycle schedule, and
keeps a history of loss and pretext accuracy. Results are cached on disk under a key made from
the *whole* configuration (task and its options, data, backbone, budget, seed), so running a
notebook again loads the weights instead of training.

Batches are made in one of two ways, with the same result (every step draws its pretext
parameters from its own seeded generator, so who makes a batch does not matter):

- ``workers=0`` (the quick profile): in the training process, on the training device. On a
  CUDA GPU the uint8 images then live on the GPU and each batch is one gather there.
- ``workers=N``: a ``torch.utils.data.DataLoader`` with N worker processes makes the batches
  on the CPU while the model trains, each worker every N-th step, into pinned memory for a
  fast copy to the GPU.
- ``workers="auto"`` (the full profile): 0 on a CUDA GPU that holds the images (making
  batches there was measured faster on an H200, see the README), else up to 6 workers.

Precision (``TrainConfig.precision``, part of the checkpoint key as the type it resolved to):

- ``"auto"`` (the default): on CUDA, mixed precision (bfloat16, or float16 with a gradient
  scaler on GPUs without bfloat16); on a CPU that computes bfloat16 in hardware (AVX-512 BF16
  or AMX, as torch reports it), bfloat16 autocast; float32 everywhere else;
- ``"float32"``: float32 everywhere; ``"bfloat16"``: bfloat16 autocast even where the CPU only
  emulates it (slow; for checks).

Autocast runs convolutions and linear layers in bfloat16; the parameters, the optimiser and
its momentum, the BatchNorm running statistics and the loss stay float32 (BatchNorm takes
bfloat16 activations but accumulates its statistics in float32).

Inference (:func:`predict`, and the probe's features) runs in ``eval()`` mode under
``torch.inference_mode``, channels_last and cache-sized batches, in the precision the model was
trained in, or what ``"auto"`` means on the inference device for a model trained in reduced
precision (see :func:`inference_dtype`). Trained models are returned in channels_last memory
format on the CPU, so a direct call ``model(images)`` takes the fast convolution path too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import os
import time
import warnings
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from .cache import (
    CorruptCacheFile, atomic_save, cache_dir, cached_json, config_key, fingerprint, safe_load,
)
from .data import Dataset, to_float
from .models import Backbone, Classifier, LinearHead, build_backbone
from .pretext.base import Task

CHECKPOINT_FORMAT = 1


def select_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple's MPS, then the CPU; anything else is used as given."""
    if str(device) != "auto":
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available here; "
                             "use --device cpu or auto")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


PRECISIONS = ("auto", "float32", "bfloat16")
"""The values of ``precision`` (see the module docstring)."""


def check_precision(precision) -> str:
    """``precision`` itself if it is one of :data:`PRECISIONS`, else a ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def cpu_has_native_bfloat16() -> bool:
    """Whether torch reports bfloat16 arithmetic in this CPU's hardware: AVX-512 BF16 or AMX
    (x86). Without it torch emulates bfloat16, several times slower than float32."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.9
    if capabilities is not None:
        caps = capabilities()
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # older torch
        check = getattr(torch.cpu, probe, None) or getattr(torch._C._cpu, probe, None)
        if check is not None and check():
            return True
    return False


def autocast_dtype(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast type that ``precision`` means on ``device``; None means plain float32."""
    check_precision(precision)
    dev = torch.device(device)
    if precision == "float32":
        return None
    if dev.type == "cuda":
        if precision == "auto":
            return mixed_precision_dtype(dev)
        if not torch.cuda.is_bf16_supported():
            raise ValueError("precision 'bfloat16' asked for, but this GPU has no bfloat16; "
                             "use 'auto' (float16 mixed precision) or 'float32'")
        return torch.bfloat16
    if dev.type == "cpu":
        if precision == "bfloat16" or cpu_has_native_bfloat16():
            return torch.bfloat16
        return None
    if precision == "bfloat16":
        raise ValueError(f"precision 'bfloat16' is not supported on {dev.type} here; "
                         "use 'auto' or 'float32'")
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    """The name of an autocast type: "float32" (for None), "bfloat16" or "float16"."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def inference_dtype(trained_precision: str, device: str | torch.device,
                    precision: str | None = None) -> torch.dtype | None:
    """The autocast type of forward passes on ``device`` of a model trained in
    ``trained_precision`` (the resolved name in its configuration): ``precision`` when given;
    else float32 for a float32 model (also where the user asked for float32), and what
    "auto" means on ``device`` for a model trained in reduced precision."""
    if precision is not None:
        return autocast_dtype(precision, device)
    return None if trained_precision == "float32" else autocast_dtype("auto", device)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (and so the checkpoint's cache key)."""

    budget_samples: int = 40_000  # pretext samples (network inputs with a target) to train on
    batch_size: int = 128  # samples per step
    lr: float = 0.1  # peak learning rate of the one-cycle schedule
    weight_decay: float = 5e-4
    width: int = 32  # backbone width of the first block
    depth: int = 4  # backbone blocks
    convs_per_block: int = 1
    seed: int = 0
    precision: str = "auto"  # "auto", "float32" or "bfloat16" (see the module docstring)

    def __post_init__(self):
        if self.budget_samples < 1 or self.batch_size < 1:
            raise ValueError("budget_samples and batch_size must be positive")
        check_precision(self.precision)


@dataclasses.dataclass(frozen=True)
class SupervisedTask(Task):
    """The supervised baseline as a 'task': predict the true class of each image.

    It trains the same backbone with the same loop and budget as every pretext task, so its
    features are the upper reference of the probe.
    """

    num_classes: int = 10
    flip: bool = True  # random horizontal flips (the only augmentation)

    name = "supervised"
    samples_per_image = 1

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(str(i) for i in range(self.num_classes))

    def training_data(self, dataset: Dataset):
        return dataset.train_images, dataset.train_labels

    def evaluation_data(self, dataset: Dataset):
        return dataset.test_images, dataset.test_labels

    def make_batch(self, images, *, generator, labels):
        images = to_float(images)
        if self.flip:
            flip = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        return images, labels

    def make_eval_batch(self, images, *, generator, labels):
        """The evaluation batch: the images as they are, no random flips (``generator`` is
        not used), so that the test accuracy is that of the test images themselves."""
        return to_float(images), labels

    def build_model(self, backbone: Backbone) -> nn.Module:
        return Classifier(backbone, LinearHead(backbone.out_channels, self.num_classes))

    def probe_inputs(self, images):
        return images


@dataclasses.dataclass
class Trained:
    """A trained (or freshly initialised) task model with what it took to make it."""

    task: object
    model: nn.Module  # backbone + head, on the CPU (channels_last), in eval() mode
    history: dict  # lists per step: "step", "samples", "loss", "accuracy", "lr"
    config: dict  # the full configuration (the cache key is its hash)
    seconds: dict  # "batch" (making pretext batches), "step" (forward/backward/update), "total"
    from_cache: bool = False

    @property
    def backbone(self) -> Backbone:
        return self.model.backbone


def _index_batches(n: int, size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless epochs over range(n), each in a fresh seeded order (sampling without
    replacement within an epoch), cut into index tensors of ``size``; a batch that crosses
    the end of an epoch continues with the next epoch's order."""
    perm, pos = torch.randperm(n, generator=generator), 0
    while True:
        parts, need = [], size
        while need:
            if pos == n:
                perm, pos = torch.randperm(n, generator=generator), 0
            take = perm[pos:pos + need]
            parts.append(take)
            pos += len(take)
            need -= len(take)
        yield parts[0] if len(parts) == 1 else torch.cat(parts)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of training step ``step``'s pretext parameters: seeded from the run's
    seed and the step alone, so a batch is the same whichever process makes it."""
    return torch.Generator().manual_seed((seed + 1) * 2**32 + step)


def _make_batches(task, images, labels, *, n_images: int, steps: int, seed: int,
                  device: torch.device, every: int = 1, first: int = 0):
    """(inputs, targets) of steps first, first + every, ... < steps, made on ``device``.

    The image order (seeded epochs) comes from ``seed``; each step's pretext parameters from
    :func:`step_generator`.
    """
    order = _index_batches(len(images), n_images, torch.Generator().manual_seed(seed))
    for step in range(steps):
        idx = next(order)
        if step % every != first:
            continue
        # index_select: many times faster than images[idx] on the CPU. The batch stays uint8
        # (a quarter of the bytes to move); the task converts it to float where that is
        # cheapest (the patch tasks after cutting their patches).
        batch = images.index_select(0, idx.to(images.device)).to(device, non_blocking=True)
        g = step_generator(seed, step)
        if labels is None:
            yield task.make_batch(batch, generator=g)
        else:
            yield task.make_batch(batch, generator=g, labels=labels.index_select(
                0, idx.to(labels.device)).to(device))


class _BatchStream(IterableDataset):
    """The training batches as a DataLoader source: worker k of N makes steps k, k + N, ...
    on the CPU; the DataLoader takes one batch from each worker in turn, so the steps arrive
    in order."""

    def __init__(self, task, images, labels, *, n_images: int, steps: int, seed: int):
        super().__init__()
        self.task, self.images, self.labels = task, images, labels
        self.n_images, self.steps, self.seed = n_images, steps, seed

    def __iter__(self):
        info = get_worker_info()
        first, every = (info.id, info.num_workers) if info else (0, 1)
        return _make_batches(self.task, self.images, self.labels, n_images=self.n_images,
                             steps=self.steps, seed=self.seed, device=torch.device("cpu"),
                             every=every, first=first)


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)  # N workers, one core each: no oversubscription


def _loader(task, images, labels, *, n_images: int, steps: int, seed: int, workers: int,
            pin: bool) -> DataLoader:
    return DataLoader(_BatchStream(task, images, labels, n_images=n_images, steps=steps,
                                   seed=seed),
                      batch_size=None, num_workers=workers, pin_memory=pin,
                      prefetch_factor=4, worker_init_fn=_one_thread)


def training_data(task, dataset: Dataset):
    """(images, labels or None) that ``task`` trains on.

    Pretext tasks train on the unlabeled images and make their own targets; a task may define
    ``training_data(dataset)`` instead (the supervised baseline returns the labelled split;
    Exemplar-CNN its seed patches with one surrogate class each). When labels are given they
    reach ``make_batch`` as ``labels=`` for the images of the batch.
    """
    if hasattr(task, "training_data"):
        return task.training_data(dataset)
    return dataset.unlabeled, None


def evaluation_data(task, dataset: Dataset):
    """(images, labels or None) for the held-out pretext accuracy: the test images, unless the
    task defines ``evaluation_data(dataset)`` (Exemplar-CNN: fresh transformations of its
    seeds)."""
    if hasattr(task, "evaluation_data"):
        return task.evaluation_data(dataset)
    return dataset.test_images, None


def full_config(task, dataset: Dataset, config: TrainConfig, *,
                device: str | torch.device = "auto") -> dict:
    """The configuration that identifies a trained model: task, options, data, training.

    Its ``precision`` is the type ``config.precision`` resolves to on ``device`` ("float32",
    "bfloat16" or "float16"), so "auto" on a CPU with and one without native bfloat16 are
    different models, and an explicit choice matching what "auto" chose is the same one."""
    train = dataclasses.asdict(config)
    train["precision"] = precision_name(autocast_dtype(config.precision, select_device(device)))
    return {"format": CHECKPOINT_FORMAT, "task": task.name, "options": task.options(),
            "data": dataset.spec, "content": data_fingerprint(dataset, "train"), "train": train}


def data_fingerprint(dataset: Dataset, part: str = "all") -> str:
    """A fingerprint of the images and labels themselves: those training may use ("train":
    the unlabeled images and the labelled train split) or "all" of them (the test split too).
    A dataset changed in code (``dataclasses.replace`` with other images) keeps its ``spec``,
    but not its fingerprint, so nothing cached for the original is served for it."""
    tensors = [dataset.unlabeled, dataset.train_images, dataset.train_labels]
    if part == "all":
        tensors += [dataset.test_images, dataset.test_labels]
    return fingerprint(*[t for t in tensors if t is not None])


def checkpoint_path(task, dataset: Dataset, config: TrainConfig, *,
                    device: str | torch.device = "auto"):
    """Where the checkpoint of this task, data and configuration (trained on ``device``) is
    cached."""
    key = config_key(full_config(task, dataset, config, device=device))
    return cache_dir() / "checkpoints" / f"{task.name}-{key}.pt"


def _on_cpu(model: nn.Module, precision: str) -> nn.Module:
    """``model`` on the CPU in eval() mode and channels_last (the fast convolutions there,
    also for a direct call), its backbone tagged with the precision it was trained in (what
    :func:`inference_dtype` reads, also in the probe)."""
    model = model.to("cpu", memory_format=torch.channels_last).eval()
    model.backbone.trained_precision = precision
    return model


def _new_model(task, dataset: Dataset, config: TrainConfig) -> nn.Module:
    # a task may read fewer channels than the images have (colorization: lightness only)
    backbone = build_backbone(in_channels=getattr(task, "in_channels", dataset.channels),
                              width=config.width, depth=config.depth,
                              convs_per_block=config.convs_per_block, seed=config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)  # the head's initialisation is seeded too
        # a decoder back to the image's size needs that size (context encoders)
        if "image_size" in inspect.signature(task.build_model).parameters:
            return task.build_model(backbone, image_size=dataset.image_size)
        return task.build_model(backbone)


def mixed_precision_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast type of training on ``device``: bfloat16 on CUDA GPUs that have it, else
    float16 (with a gradient scaler); None (float32) on the CPU and MPS."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _grad_scaler():
    """A CUDA gradient scaler for float16 training (its home moved in torch 2.3)."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def _optimiser_step(loss: torch.Tensor, opt, scaler=None) -> None:
    """Gradients of ``loss`` and one step of ``opt``; with a float16 ``scaler`` the loss is
    scaled so that small gradients do not underflow."""
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()


def _fits_on_gpu(tensor: torch.Tensor, device: torch.device) -> bool:
    """Whether ``tensor`` takes under a quarter of the GPU's free memory."""
    free, _ = torch.cuda.mem_get_info(device)
    return tensor.numel() * tensor.element_size() <= free // 4


def _resident(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """The training images (uint8) or labels where batches are gathered from: on a CUDA GPU
    the whole set once, when it takes under a quarter of the free memory, so that a batch is
    one gather on the GPU; elsewhere they stay in host memory."""
    if tensor is None or device.type != "cuda" or not _fits_on_gpu(tensor, device):
        return tensor
    return tensor.to(device)


AUTO_WORKERS = 6
"""Loader workers of ``workers="auto"`` where batches are not made on the GPU."""


def resolve_workers(workers: int | str, images: torch.Tensor, device: torch.device) -> int:
    """The number of loader workers ``workers`` means for these images on ``device``:
    an int as it is; "auto": 0 when a CUDA GPU holds the images (batches are made there),
    else ``AUTO_WORKERS`` (at most the CPU cores but one)."""
    if workers == "auto":
        if device.type == "cuda" and _fits_on_gpu(images, device):
            return 0
        return max(0, min(AUTO_WORKERS, (os.cpu_count() or 1) - 1))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be 0 (make batches in this process), a positive "
                         f"number of loader processes or 'auto', got {workers!r}")
    return workers


class _StepClock:
    """Splits each training step into making the batch and updating the model (3 marks per
    step). On CUDA the marks are events in the GPU's stream, read only every few steps, so
    timing never makes the CPU wait for the GPU; elsewhere they are ``time.perf_counter()``."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks = []
        self.totals = {"batch": 0.0, "step": 0.0}

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def fold(self) -> None:
        """Add the finished steps to the totals and forget their marks."""
        if self.cuda and self.marks:
            self.marks[-1].synchronize()
        for i in range(0, len(self.marks) - 2, 3):
            t0, t1, t2 = self.marks[i:i + 3]
            if self.cuda:
                self.totals["batch"] += t0.elapsed_time(t1) / 1000
                self.totals["step"] += t1.elapsed_time(t2) / 1000
            else:
                self.totals["batch"] += t1 - t0
                self.totals["step"] += t2 - t1
        del self.marks[:len(self.marks) - len(self.marks) % 3]

    def seconds(self) -> dict:
        self.fold()
        return dict(self.totals)


def _read_back(pending: list, history: dict) -> None:
    """Move the pending per-step numbers (device tensors) into the history as floats."""
    if not pending:
        return
    values = torch.stack([torch.stack([loss.float(), acc]) for _, _, loss, acc, _ in pending])
    for (step, seen, _, _, lr), (loss, acc) in zip(pending, values.tolist()):
        for key, value in (("step", step), ("samples", seen), ("loss", loss),
                           ("accuracy", acc), ("lr", lr)):
            history[key].append(value)
    pending.clear()


def train(task, dataset: Dataset, config: TrainConfig = TrainConfig(), *,
          device: str | torch.device = "auto", cache: bool = True, progress: bool = True,
          desc: str | None = None, workers: int | str = 0) -> Trained:
    """Train ``task``'s model on ``dataset`` (or load it from the checkpoint cache).

    The same task, data and config give the same weights on the same machine: model
    initialisation, batch order, pretext parameters and dropout all come from ``config.seed``.
    ``workers`` > 0 makes the batches in that many DataLoader worker processes (the same
    batches: the number of workers is not part of the configuration); "auto" chooses (see
    :func:`resolve_workers`). ``config.precision`` chooses the arithmetic (see the module
    docstring); the type it resolves to on ``device`` is part of the checkpoint key.
    """
    if workers != "auto":
        resolve_workers(workers, torch.empty(0), torch.device("cpu"))  # bad values fail early
    dev = select_device(device)
    cfg = full_config(task, dataset, config, device=dev)
    path = checkpoint_path(task, dataset, config, device=dev)
    if cache and path.exists():
        try:
            return _load(task, dataset, config, cfg, path)
        except CorruptCacheFile as err:
            warnings.warn(f"{err}; training again", stacklevel=2)

    images, labels = training_data(task, dataset)
    workers = resolve_workers(workers, images, dev)
    if not workers:  # batches made here: on a GPU, gather them there
        images, labels = _resident(images, dev), _resident(labels, dev)
    per_image = task.samples_per_image
    n_images = max(1, config.batch_size // per_image)
    steps = math.ceil(config.budget_samples / (n_images * per_image))
    # channels_last: faster convolutions on the CPU, and on CUDA tensor cores in mixed precision
    channels_last = dev.type in ("cpu", "cuda")
    amp = autocast_dtype(config.precision, dev)
    scaler = _grad_scaler() if amp == torch.float16 else None
    model = _new_model(task, dataset, config)
    if hasattr(task, "fit_to_data"):  # settings learned from the data (colorization's weights)
        task.fit_to_data(model, images, seed=config.seed)
    model = model.to(dev)
    loss_of = getattr(model, "pretext_loss", None)  # a task's own loss; else cross-entropy
    hits_of = _hits_of(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)  # no weight decay on BatchNorm and biases
    opt = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=config.lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps,
                                                pct_start=0.15, anneal_strategy="cos")
    batches = dict(n_images=n_images, steps=steps, seed=config.seed)
    if workers:
        batches = iter(_loader(task, images, labels, workers=workers,
                               pin=dev.type == "cuda", **batches))
    else:
        batches = _make_batches(task, images, labels, device=dev, **batches)
    history = {"step": [], "samples": [], "loss": [], "accuracy": [], "lr": []}
    clock = _StepClock(dev)
    pending = []  # (step, samples, loss, accuracy, lr) not yet read back from the device
    seen = 0
    start = time.perf_counter()
    model.train()
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(config.seed + 2)  # dropout and other in-model randomness
        # progress=False turns the bar off; else tqdm's own settings apply (TQDM_DISABLE=1
        # turns every bar off, as the book's build does)
        bar = tqdm(range(steps), desc=desc or f"training {task.name}", unit="step", leave=True,
                   **({} if progress else {"disable": True}))
        for step in bar:
            clock.mark()
            inputs, targets = next(batches)
            inputs = inputs.to(dev, non_blocking=True)
            targets = targets.to(dev, non_blocking=True)
            if channels_last and inputs.ndim == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            clock.mark()
            with (torch.autocast(dev.type, dtype=amp) if amp else contextlib.nullcontext()):
                logits = model(inputs)
                loss = (loss_of(logits.float(), targets) if loss_of is not None
                        else nn.functional.cross_entropy(logits.float(), targets))
            _optimiser_step(loss, opt, scaler)
            sched.step()
            clock.mark()
            seen += len(targets)
            acc = hits_of(logits.detach(), targets)
            pending.append((step + 1, seen, loss.detach(), acc, sched.get_last_lr()[0]))
            if step % 10 == 0 or step == steps - 1:  # read back in groups: no sync every step
                _read_back(pending, history)
                clock.fold()
                bar.set_postfix(loss=f"{history['loss'][-1]:.3f}",
                                acc=f"{history['accuracy'][-1]:.2f}")
    seconds = clock.seconds()
    seconds["total"] = time.perf_counter() - start
    model = _on_cpu(model, cfg["train"]["precision"])
    trained = Trained(task, model, history, cfg, seconds)
    if cache:
        atomic_save({"format": CHECKPOINT_FORMAT, "config": json.dumps(cfg, sort_keys=True),
                     "state": model.state_dict(), "history": history, "seconds": seconds}, path,
                    best_effort=True)  # a cache we cannot write must not lose the trained model
    return trained


def _argmax_hits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(1) == targets).float().mean()


def _hits_of(model: nn.Module):
    """How a batch's pretext accuracy is computed, (logits, targets) -> a 0-d tensor: the
    model's own ``pretext_hits`` where it has one (inpainting: hidden pixels painted within a
    tolerance), else how often the arg-max is the target."""
    return getattr(model, "pretext_hits", _argmax_hits)


def _load(task, dataset, config, cfg, path) -> Trained:
    ckpt = safe_load(path)
    try:
        if ckpt["format"] != CHECKPOINT_FORMAT or json.loads(ckpt["config"]) != json.loads(
                json.dumps(cfg, sort_keys=True)):
            raise ValueError("its configuration does not match")
        model = _new_model(task, dataset, config)
        model.load_state_dict(ckpt["state"])
        return Trained(task, _on_cpu(model, cfg["train"]["precision"]), ckpt["history"], cfg,
                       ckpt["seconds"], from_cache=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CorruptCacheFile(f"checkpoint {path} does not fit this model ({err})") from err


def untrained(task, dataset: Dataset, config: TrainConfig = TrainConfig()) -> Trained:
    """The model exactly as training would start: the random-init baseline."""
    cfg = {**full_config(task, dataset, config), "untrained": True}
    model = _on_cpu(_new_model(task, dataset, config), cfg["train"]["precision"])
    return Trained(task, model, {k: [] for k in ("step", "samples", "loss", "accuracy", "lr")},
                   cfg, {"total": 0.0})


INFERENCE_PIXELS = {"cpu": 2**19, "gpu": 2**23}
"""Source-image pixels per inference batch: on the CPU about 128 images of 64x64, whose
activations stay in the caches (batches of 256 or 512 measured slower per image there); on a
GPU many more, to fill it."""


def inference_batch(images: torch.Tensor, device: str | torch.device,
                    samples_per_image: int = 1) -> int:
    """Images per inference batch on ``device``: :data:`INFERENCE_PIXELS` over the pixels of
    one image and the network inputs it makes (at least 1)."""
    budget = INFERENCE_PIXELS["cpu" if torch.device(device).type == "cpu" else "gpu"]
    pixels = images.shape[-1] * images.shape[-2] if images.ndim >= 2 else 1
    return max(1, budget // (pixels * samples_per_image))


def predict(trained: Trained, images: torch.Tensor, labels: torch.Tensor | None = None, *,
            seed: int = 12345, batch_size: int | None = None,
            device: str | torch.device = "auto", keep_inputs: bool = False,
            precision: str | None = None):
    """Pretext predictions on ``images`` (usually held-out ones): (logits, targets, inputs).

    The pretext parameters are drawn from a generator seeded with ``seed``, so the same images
    give the same test every time. A task whose training batches are augmented at random (the
    supervised baseline's flips) defines ``make_eval_batch`` for evaluation, which is used
    instead of ``make_batch``. ``labels`` go to the task for tasks that train on labelled data
    (see :func:`training_data`). ``inputs`` is None unless ``keep_inputs``.

    Forward passes only: ``eval()``, ``torch.inference_mode``, channels_last, ``batch_size``
    network inputs at a time (default: :func:`inference_batch`), in the model's own precision
    unless ``precision`` is given (see :func:`inference_dtype`). The logits are float32.
    """
    dev = select_device(device)
    task = trained.task
    make = getattr(task, "make_eval_batch", task.make_batch)
    amp = inference_dtype(_trained_precision(trained.model), dev, precision)
    channels_last = dev.type in ("cpu", "cuda")
    fmt = {"memory_format": torch.channels_last} if channels_last else {}
    model = trained.model.to(dev, **fmt).eval()
    g = torch.Generator().manual_seed(seed)
    all_logits, all_targets, all_inputs = [], [], []
    per_image = (inference_batch(images, dev, task.samples_per_image) if batch_size is None
                 else max(1, batch_size // task.samples_per_image))
    try:
        with torch.inference_mode(), (torch.autocast(dev.type, dtype=amp) if amp
                                      else contextlib.nullcontext()):
            for i in range(0, len(images), per_image):
                batch = images[i:i + per_image].to(dev)
                if labels is None:
                    inputs, targets = make(batch, generator=g)
                else:
                    inputs, targets = make(batch, generator=g,
                                           labels=labels[i:i + per_image].to(dev))
                x = inputs
                if channels_last and x.ndim == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                all_logits.append(model(x).float().cpu())
                all_targets.append(targets.cpu())
                if keep_inputs:
                    all_inputs.append(inputs.cpu())
    finally:
        trained.model.to("cpu", **fmt)
    # concatenated outside inference mode: ordinary tensors the caller may change in place
    return (torch.cat(all_logits), torch.cat(all_targets),
            torch.cat(all_inputs) if keep_inputs else None)


def _trained_precision(model: nn.Module) -> str:
    """The precision ``model`` was trained in (its backbone's tag; float32 if untagged)."""
    return getattr(getattr(model, "backbone", None), "trained_precision", "float32")


PRETEXT_EVAL_VERSION = 1
"""Bumped whenever :func:`predict` changes what a pretext accuracy is (part of its cache key)."""


def pretext_accuracy(trained: Trained, dataset: Dataset, *, limit: int | None = None,
                     cache: bool = True, **kwargs) -> float:
    """Share of held-out pretext samples the model gets right (on at most ``limit`` images).

    Cached under the cache folder by what it depends on: the network's weights, the task
    and its options, the images (and labels) evaluated, the device type and ``kwargs`` (the
    seed of the pretext parameters, the precision); ``cache=False`` neither reads nor writes.
    """
    images, labels = evaluation_data(trained.task, dataset)
    if limit is not None:
        images = images[:limit]
        labels = None if labels is None else labels[:limit]

    def compute() -> float:
        logits, targets, _ = predict(trained, images, labels, **kwargs)
        return float(_hits_of(trained.model)(logits, targets))

    device = select_device(kwargs.get("device", "auto")).type
    settings = {k: v for k, v in kwargs.items() if k != "device"}
    return cached_json("pretext", (PRETEXT_EVAL_VERSION, trained.model, trained.task, images,
                                   labels, device, settings), compute, cache=cache)
