"""Profiles: one switch between a CPU-minutes run and a paper-like run.

``quick`` is the default everywhere (the notebooks, the CLI and CI): the embedded scenes at
64x64, a narrow backbone and a budget that trains in well under a minute on two CPU cores.
``full`` uses budgets and widths closer to the papers, meant for a GPU and a real dataset.

The ``full`` profile next to the papers (the papers' numbers, not measured with this code):

- data: every image of CIFAR-10 (50,000 train / 10,000 test) or STL-10 (100,000 unlabeled for
  the pretext task, 5,000 train / 8,000 test for the probe), resized to 64x64 — one size for
  every task, so that the patch-based tasks (jigsaw, relative patch location) have room for
  their tiles and the comparison between tasks stays fair. CIFAR-10 is upsampled from 32x32,
  STL-10 downsampled from 96x96.
- backbone: 4 blocks of 2 convolutions, widths 64-128-256-512 (the rotation paper's
  Network-In-Network has 4 blocks of 3 layers with about 192 channels).
- optimiser: SGD with Nesterov momentum 0.9, peak learning rate 0.1, weight decay 5e-4,
  batches of 512 samples (as the rotation paper's 128 images x 4 rotations), a one-cycle
  schedule instead of the paper's steps. Weight decay acts on the weights of convolutions and
  linear layers only, never on BatchNorm's scales and shifts or on biases (a common choice
  for BatchNorm networks); the rotation authors' released code decays every parameter.
- budget: 20 million samples for rotation = 100 epochs of CIFAR-10's 50,000 images x 4
  rotations (the authors' released CIFAR-10 configuration trains 200 epochs, learning rate
  0.1 divided by 5 at epochs 60, 120 and 160); 10 million samples for every other task and
  for the supervised baseline (200 epochs of CIFAR-10's labelled images).
- the tasks as the papers and the authors' released code set them (``task_options``; the
  ``quick`` profile keeps the tasks' defaults, sized for CPU minutes): rotation with random
  crops of the image padded by 8 px (the released recipe's 4 px at CIFAR-10's 32 px; our
  64 px images are CIFAR-10's upsampled twice) and random flips; Exemplar-CNN with 16,000
  surrogate classes (the paper: up to 32,000), 625 transformed samples of each on the 10
  million sample budget; jigsaw with the paper's 1000-permutation set; relative patch
  location with colour dropping, as the released training code always does; SimCLR with the
  paper's views (crops of 8-100% of the area, resized to the image's size) and every view of a
  batch of 512 (256 images) compared with every other, as the paper's batch; colorization with
  colours predicted at 1/4 of the input's side, as the paper (the quick profile: 1/8); context
  encoders with the paper's central hole of half the side and its overlapping band (the task's
  defaults in both profiles).
- the papers' numbers, and how their protocols differ from our probe (a multinomial logistic
  regression on each block's map average-pooled to at most 1,024 features, no augmentation;
  the full backbone's block 3 gives 256 channels x 2 x 2):

  * rotation (Gidaris et al. 2018), CIFAR-10: 89.06% with a non-linear classifier on block
    2 (ConvB2) of their 4-block Network-In-Network, supervised NIN 92.80%. That classifier is
    a three-layer fully connected network on the unpooled 192 x 8 x 8 map, trained with
    random crops and flips. At our 64 px input the block with the 8 x 8 map is block 3 (each
    block halves the size), so that is the block to set next to their ConvB2.
  * Exemplar-CNN (Dosovitskiy et al. 2014): STL-10 74.2%, CIFAR-10 84.3%, with their own
    larger network and a linear SVM on the features of several layers, each max-pooled over
    the image's four quadrants. STL-10's number is the mean over its 10 predefined training
    folds of 1,000 images each, tested on the 8,000 test images: ``run --stl10-folds`` (and
    :func:`ssl_teach.experiment.stl10_fold_probe`) evaluates that way; the plain probe fits
    on all 5,000 training images at once, which is not comparable.
  * Jigsaw (Noroozi & Favaro 2016) and relative patch location (Doersch et al. 2015) report
    ImageNet / PASCAL VOC transfer only, no CIFAR-10 or STL-10 numbers; relative patch
    location's pretext accuracy was about 38% (chance 12.5%), on far larger images.
  * SimCLR (Chen et al. 2020): 76.5% top-1 on ImageNet with a linear classifier on a ResNet-50
    four times as wide, trained with batches of 4,096 images; its CIFAR-10 runs use 32 px views
    and a ResNet-50 adapted to small images.

  * Context encoders (Pathak et al. 2016) report PASCAL VOC transfer only; colorization
    (Zhang et al. 2016) reports PASCAL VOC transfer and linear classifiers on each layer's
    frozen features on ImageNet (for context encoders and other methods too). Neither
    reports CIFAR-10 or STL-10.

  Our probe of a smaller backbone is a different protocol: expect numbers below these, with
  the same ordering of baselines.

A pretext task may set its own budget in ``task_budget`` (samples per image differ: rotation
makes 4 inputs from each image, a jigsaw puzzle 1), and its own options in ``task_options``
(:meth:`Profile.task` makes the task with them).

``workers`` is how many DataLoader worker processes make the batches on the CPU while the model
trains: 0 in ``quick`` (on two cores the training process makes them faster itself), "auto" in
``full`` (none on a CUDA GPU that holds the images, where making the batches on the GPU was
measured faster; else 6). It changes the speed only, never the result (each step's pretext
parameters have their own seed), so it is not part of the checkpoint key.

``precision`` is the arithmetic of training and inference, "auto" in both profiles: bfloat16
autocast on a CPU that computes bfloat16 in hardware (AVX-512 BF16 or AMX), CUDA's mixed
precision on a GPU, float32 elsewhere; "float32" or "bfloat16" force one (``--precision`` on
the command line). The type it resolves to is part of the checkpoint key. ``task_precision``
says what "auto" means for one task: the quick profile keeps SimCLR in float32, whose probe
lost accuracy in bfloat16 (over three training seeds; a projection head kept in float32 did not
win it back, so it is not the head's cosine similarities alone).
"""

from __future__ import annotations

import dataclasses

from .train import TrainConfig, check_precision


@dataclasses.dataclass(frozen=True)
class Profile:
    """How much data, how wide a backbone and how long to train."""

    name: str
    image_size: int
    n_unlabeled: int
    n_train: int
    n_test: int
    train: TrainConfig
    task_budget: dict = dataclasses.field(default_factory=dict)  # per-task budget overrides
    workers: int | str = 0  # DataLoader workers making batches (0: the training process)
    task_options: dict = dataclasses.field(default_factory=dict)  # per-task option overrides
    precision: str = "auto"  # "auto", "float32" or "bfloat16" (see the module docstring)
    task_precision: dict = dataclasses.field(default_factory=dict)  # what "auto" means per task

    def __post_init__(self):
        check_precision(self.precision)
        for name, precision in self.task_precision.items():
            check_precision(precision)

    def train_config(self, task_name: str | None = None, *, seed: int = 0) -> TrainConfig:
        """The training configuration of ``task_name`` (baselines: None) with ``seed`` and
        the profile's ``precision``."""
        budget = self.task_budget.get(task_name, self.train.budget_samples)
        precision = self.precision
        if precision == "auto":  # a task may keep float32 where "auto" would choose bfloat16
            precision = self.task_precision.get(task_name, "auto")
        return dataclasses.replace(self.train, budget_samples=budget, seed=seed,
                                   precision=precision)

    def task(self, name: str, **options):
        """The pretext task ``name`` with this profile's options for it, updated by
        ``options``."""
        from .pretext import get_task

        return get_task(name, **{**self.task_options.get(name, {}), **options})

    def dataset_kwargs(self) -> dict:
        return {"size": self.image_size, "n_unlabeled": self.n_unlabeled,
                "n_train": self.n_train, "n_test": self.n_test}


PROFILES = {
    "quick": Profile(
        name="quick", image_size=64, n_unlabeled=10_000, n_train=5_000, n_test=2_000,
        # width 16 (channels 16-32-64-128): every training, fine-tuning and feature pass costs
        # about half of width 24's on two cores, for probe and fine-tuning margins over
        # random-init that stay close to width 24's (compare the README's tables with git log)
        train=TrainConfig(budget_samples=16_000, batch_size=128, lr=0.1, width=16, depth=4),
        # a pair of 16 px patches costs about 1/5 of a 64 px image; 16,000 pairs left relative
        # patch location short of its pretext accuracy (gap 7, jitter 1)
        # exemplar: a 32 px patch costs about 1/4 of a 64 px image; 64,000 samples are 128 per
        # surrogate class (N = 500); 02 measures how too few samples per class (N = 2,000 at 8
        # per class) probe below random-init; at width 16, 48,000 samples probed less than 10
        # points above random-init
        # simclr: the budget counts views, two per image (32,000 images); a 32 px view costs
        # about 1/4 of a 64 px image; `sweep --tasks simclr` measures longer budgets
        # colorization and inpainting keep the 16,000 images. The committed sweep: inpainting
        # trained 2, 4 and 8 times as long probes 42.3 / 41.9 / 43.4% against 43.6% and never
        # fine-tunes better than from scratch; colorization at 32,000 probes 66.8% against
        # 49.2% at 16,000 (notebook 07 reads both from the record)
        task_budget={"relative_patch": 32_000, "exemplar": 64_000, "simclr": 64_000},
        # SimCLR trains in float32 even where "auto" means bfloat16 autocast (a CPU with
        # AVX-512 BF16): with bfloat16 its probe was 54.8 / 63.5 / 52.4% over training seeds
        # 0 / 1 / 2, with float32 54.0 / 68.3 / 70.3% (random-init about 46%)
        task_precision={"simclr": "float32"},
    ),
    "full": Profile(
        # counts above a dataset's size take it whole (CIFAR-10: 50,000 / 50,000 / 10,000;
        # STL-10: 100,000 unlabeled / 5,000 / 8,000); see the module docstring for the papers
        name="full", image_size=64, n_unlabeled=100_000, n_train=50_000, n_test=10_000,
        train=TrainConfig(budget_samples=10_000_000, batch_size=512, lr=0.1, width=64,
                          depth=4, convs_per_block=2),
        task_budget={"rotation": 20_000_000},
        # the papers' settings (see the module docstring)
        task_options={"rotation": {"crop_pad": 8}, "exemplar": {"num_classes": 16_000},
                      "jigsaw": {"num_permutations": 1000},
                      "relative_patch": {"colour_drop": True},
                      "simclr": {"view_size": 0, "min_scale": 0.08, "group": 256},
                      "colorization": {"stride": 4}},
        # on a GPU that holds the images, batches are made there; else by 6 DataLoader
        # worker processes while the model trains (see train.py and the README's numbers)
        workers="auto",
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` ("quick" or "full")."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}") from None
