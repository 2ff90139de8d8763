"""Relative patch location: where does the second patch sit relative to the first?

Doersch, Gupta & Efros, "Unsupervised Visual Representation Learning by Context Prediction",
ICCV 2015, https://arxiv.org/abs/1505.05192. A 3x3 grid is laid over the image; the network
sees the centre patch and one of its 8 neighbours and must say which neighbour it is. To answer
"the wheel is below the car body" it has to recognise wheels and car bodies.

Paper details kept here:

- a gap between the grid cells and a random jitter of every patch (the paper: 96 px patches,
  a gap of 48 px, up to 7 px of jitter), so that lines running across a patch border or
  matching textures at the edges cannot give the answer away. Two jitters can close the gap
  by up to ``2 * jitter``, so ``gap > 2 * jitter`` is an invariant of the task (checked when
  it is made): the two patches of a pair never touch or overlap, and the network cannot match
  pixels across them. The defaults keep the paper's proportions on 64 px images: 16 px
  patches, a 7 px gap (the paper: half a patch) and 1 px of jitter (the paper: 7/96 of a
  patch), 62 px in all;
- labels 0..7 run row-major over the 3x3 grid, skipping the centre (:data:`OFFSETS`);
- a late-fusion siamese network: the same backbone looks at each patch alone, and only its
  pooled features are concatenated and classified (the patches never meet in a convolution);
- chromatic aberration was a real shortcut: lenses shift the green channel towards the image
  centre relative to red and blue, by an amount that grows with the distance from the centre,
  so a patch tells its absolute position in the image from colour fringes alone. The two fixes
  of the paper are here, each switchable: *projection* removes the green-magenta colour axis
  from every pixel, *colour dropping* keeps one random channel per patch and replaces the
  other two by faint noise. :func:`chromatic_aberration` adds the shortcut to clean images.
  The authors' released training code always drops colours; the ``full`` profile does too
  (``colour_drop=True``), the ``quick`` one leaves both off so that notebook 04 can switch
  them on and off against a synthetic aberration;
- every patch is normalised by its own mean and standard deviation (per-patch normalisation),
  so overall brightness differences between patches carry no position signal.

Shapes: ``images`` (N, C, H, W), uint8 or float in [0, 1] -> ``inputs`` (N, 2, C, p, p)
(centre patch, neighbour), ``targets`` (N,) in 0..7. Everything is batched on the images'
device; the random parameters are drawn from an explicit ``torch.Generator`` on the CPU
(:func:`sample_params`).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..data import like, to_float
from ..models import Backbone, global_pool
from .base import Task
from .ops import check_batch, cut_squares, normalise_each

OFFSETS = ((-1, -1), (-1, 0), (-1, 1),
           (0, -1), (0, 1),
           (1, -1), (1, 0), (1, 1))
"""(row, column) step from the centre cell to the neighbour of each label, row-major, centre
skipped: label 0 is the top-left neighbour, label 4 the right one, label 7 the bottom-right."""

CLASS_NAMES = ("top-left", "top", "top-right", "left", "right",
               "bottom-left", "bottom", "bottom-right")

GREEN_MAGENTA = (-0.5, 1.0, -0.5)
"""The green-magenta colour axis (green minus the mean of red and blue), before normalising."""

DROP_NOISE = 0.01
"""Std of the noise that replaces dropped channels, relative to the kept channel's std (the
paper: about 1/100)."""


def offset_of(label: int) -> tuple[int, int]:
    """(row, column) step in grid cells from the centre patch to neighbour ``label`` (0..7)."""
    if not 0 <= int(label) < len(OFFSETS):
        raise ValueError(f"a relative position label lies in 0..7, got {label!r}")
    return OFFSETS[int(label)]


def label_of(dr: int, dc: int) -> int:
    """The label of the neighbour ``dr`` rows and ``dc`` columns away from the centre."""
    try:
        return OFFSETS.index((int(dr), int(dc)))
    except ValueError:
        raise ValueError(f"({dr}, {dc}) is not one of the 8 neighbours of the centre cell: "
                         "each step must be -1, 0 or 1, and not both 0") from None


def grid_extent(*, patch: int, gap: int, jitter: int) -> int:
    """Side in pixels of the 3x3 grid with its gaps and the room every patch needs to jitter:
    the smallest image side that can hold it."""
    return 3 * patch + 2 * gap + 2 * jitter


def check_geometry(*, patch: int, gap: int, jitter: int, min_patch: int = 1) -> None:
    """Raise a ValueError that says what to change if the grid settings make no sense."""
    for name, value in (("patch", patch), ("gap", gap), ("jitter", jitter)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an int number of pixels, got {value!r}")
    if patch < min_patch:
        raise ValueError(f"patch must be at least {min_patch} px (the backbone halves the size "
                         f"once per block), got {patch}")
    if gap < 0 or jitter < 0:
        raise ValueError(f"gap and jitter must be >= 0, got gap={gap}, jitter={jitter}")
    if gap <= 2 * jitter:
        raise ValueError(
            f"gap={gap} must be larger than 2 * jitter = {2 * jitter}: two patches jittered "
            f"towards each other close the gap by up to 2 * jitter, and at gap <= 2 * jitter "
            "they touch or overlap, so the network could match pixels across them. Use a "
            f"larger gap (at least {2 * jitter + 1}) or a smaller jitter (at most "
            f"{max(gap - 1, 0) // 2})")


def check_images(images, *, min_size: int) -> None:
    """Raise a ValueError unless ``images`` is an (N, C, H, W) tensor with H, W >= min_size."""
    check_batch(images)
    h, w = images.shape[-2:]
    if min(h, w) < min_size:
        raise ValueError(
            f"images of {h}x{w} px are too small for this 3x3 patch grid, which needs "
            f"{min_size}x{min_size} px (3*patch + 2*gap + 2*jitter): use larger images or a "
            "smaller patch, gap or jitter")


def sample_params(n: int, *, image_size: tuple[int, int] | int, patch: int, gap: int,
                  jitter: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random positions of ``n`` pairs: "label" (n,) in 0..7, "origin" (n, 2) the (row, column)
    shift of the whole grid within the slack of the image, "jitter" (n, 2, 2) the (row, column)
    jitter of the centre patch and of the neighbour, each in [-jitter, jitter]."""
    check_geometry(patch=patch, gap=gap, jitter=jitter)
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    extent = grid_extent(patch=patch, gap=gap, jitter=jitter)
    if min(h, w) < extent:
        raise ValueError(f"a {h}x{w} image cannot hold the grid of {extent} px (3*patch + "
                         "2*gap + 2*jitter): use larger images or a smaller patch, gap or jitter")
    label = torch.randint(0, len(OFFSETS), (n,), generator=generator)
    origin = torch.stack([torch.randint(0, h - extent + 1, (n,), generator=generator),
                          torch.randint(0, w - extent + 1, (n,), generator=generator)], 1)
    jit = torch.randint(-jitter, jitter + 1, (n, 2, 2), generator=generator)
    return {"label": label, "origin": origin, "jitter": jit}


def cell_corner(cell: torch.Tensor, origin: torch.Tensor, jit: torch.Tensor, *, patch: int,
                gap: int, jitter: int) -> torch.Tensor:
    """Top-left pixel (row, column) of the patch in grid ``cell`` (row, column in 0..2), for
    a grid shifted by ``origin`` and a patch jittered by ``jit``; all (..., 2)."""
    return origin + jitter + cell * (patch + gap) + jit


def pair_corners(params: dict[str, torch.Tensor], *, patch: int, gap: int, jitter: int
                 ) -> torch.Tensor:
    """Top-left pixels of the centre patch and of the neighbour: (n, 2 patches, 2 coords)."""
    steps = torch.tensor(OFFSETS)[params["label"]]  # (n, 2)
    cells = torch.stack([torch.ones_like(steps), 1 + steps], 1)  # centre cell is (1, 1)
    return cell_corner(cells, params["origin"].unsqueeze(1), params["jitter"], patch=patch,
                       gap=gap, jitter=jitter)


def cut_patches(images: torch.Tensor, corners: torch.Tensor, *, patch: int) -> torch.Tensor:
    """Cut square patches: images (N, C, H, W), corners (N, K, 2) top-left (row, column) ->
    patches (N, K, C, patch, patch), all with one gather (no loop over images)."""
    return cut_squares(images, corners, patch)


def make_pairs(images: torch.Tensor, params: dict[str, torch.Tensor], *, patch: int, gap: int,
               jitter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic part: the pairs the parameters describe, inputs (N, 2, C, p, p) as
    (centre, neighbour) and targets (N,) = params["label"]."""
    check_images(images, min_size=grid_extent(patch=patch, gap=gap, jitter=jitter))
    corners = pair_corners(params, patch=patch, gap=gap, jitter=jitter)
    return cut_patches(images, corners, patch=patch), params["label"].to(images.device)


def grid_patches(images: torch.Tensor, *, patch: int, gap: int) -> torch.Tensor:
    """All 9 patches of the centred 3x3 grid without jitter: (N, 9, C, p, p), row-major (cell
    4 is the centre)."""
    extent = grid_extent(patch=patch, gap=gap, jitter=0)
    check_images(images, min_size=extent)
    h, w = images.shape[-2:]
    origin = torch.tensor([(h - extent) // 2, (w - extent) // 2])
    cells = torch.tensor([(r, c) for r in range(3) for c in range(3)])
    corners = cell_corner(cells, origin, torch.zeros(2, dtype=torch.long), patch=patch, gap=gap,
                          jitter=0)
    return cut_patches(images, corners.expand(len(images), 9, 2), patch=patch)


# --------------------------------------------------------------------------------------------
# Colour: the chromatic-aberration shortcut and the two countermeasures of the paper.


def chromatic_aberration(images: torch.Tensor, *, strength: float) -> torch.Tensor:
    """Synthetic lateral chromatic aberration: the green channel is shrunk towards the image
    centre by a factor 1 / (1 + strength), so at distance r from the centre it is shifted by
    about ``strength * r`` pixels relative to red and blue. Grayscale images are returned as
    they are (one channel has nothing to shift against)."""
    check_images(images, min_size=1)
    if images.shape[1] != 3 or strength == 0:
        return images
    n, _, h, w = images.shape
    # Sampling green at coordinates magnified about the centre shrinks its content inwards.
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=images.device, dtype=images.dtype)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=images.device, dtype=images.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1) * (1 + strength)
    green = nn.functional.grid_sample(images[:, 1:2], grid.expand(n, h, w, 2), mode="bilinear",
                                      padding_mode="border", align_corners=False)
    return torch.cat([images[:, :1], green, images[:, 2:]], 1)


def vignetting(images: torch.Tensor, *, strength: float) -> torch.Tensor:
    """Synthetic lens vignetting: every pixel darkened by the factor 1 - ``strength`` * r**2,
    r its distance from the image centre (1 at the corners), as a wide-open lens darkens the
    corners of a photo. uint8 images stay uint8 (rounded); float images stay float."""
    check_images(images, min_size=1)
    if not 0 <= strength <= 1:
        raise ValueError(f"vignetting strength must be in [0, 1] (1: black corners), got "
                         f"{strength}")
    h, w = images.shape[-2:]
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=images.device)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=images.device)
    r2 = (ys.view(h, 1) ** 2 + xs.view(1, w) ** 2) / 2  # 1 at the corners
    return like(to_float(images) * (1 - strength * r2), images)


def project_out_green_magenta(images: torch.Tensor) -> torch.Tensor:
    """Remove the green-magenta component of every pixel: x - (x . v) v with v the unit
    green-magenta axis, on (..., 3, H, W). One-channel images are returned as they are."""
    if images.shape[-3] != 3:
        return images
    v = torch.tensor(GREEN_MAGENTA, device=images.device, dtype=images.dtype)
    v = (v / v.norm()).view(3, 1, 1)
    return images - (images * v).sum(-3, keepdim=True) * v


def sample_colour_drop(shape: tuple[int, ...], *, generator: torch.Generator
                       ) -> dict[str, torch.Tensor]:
    """Random colour dropping for patches of ``shape`` (..., C, p, p): "keep" (...) the channel
    each patch keeps, "noise" (..., C, p, p) standard normal noise for the dropped ones."""
    *lead, c, _, _ = shape
    return {"keep": torch.randint(0, c, tuple(lead), generator=generator),
            "noise": torch.randn(tuple(shape), generator=generator)}


def drop_colours(patches: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Keep channel ``params["keep"]`` of every patch (..., C, p, p); replace the others by its
    mean plus noise of 1/100 of its std, so only one channel carries information. With C=1
    nothing is dropped."""
    c = patches.shape[-3]
    if c == 1:
        return patches
    keep = params["keep"].to(patches.device)
    kept_mask = nn.functional.one_hot(keep, c).to(patches.dtype)[..., None, None]
    kept = (patches * kept_mask).sum(-3, keepdim=True)  # (..., 1, p, p)
    mean = kept.mean((-2, -1), keepdim=True)
    std = kept.std((-2, -1), keepdim=True)
    filler = mean + DROP_NOISE * std * params["noise"].to(patches.device, patches.dtype)
    return kept_mask * patches + (1 - kept_mask) * filler


def normalise_patches(patches: torch.Tensor, *, eps: float = 1e-3) -> torch.Tensor:
    """Per-patch normalisation: subtract each patch's mean and divide by its std (over its
    channels and pixels), on (..., C, p, p)."""
    return normalise_each(to_float(patches), dims=3, eps=eps)


# --------------------------------------------------------------------------------------------
# The network.


def embed_patches(backbone: Backbone, patches: torch.Tensor) -> torch.Tensor:
    """Pooled last-block features of single patches: (M, C, p, p) -> (M, D)."""
    if backbone.blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last):
        patches = patches.contiguous(memory_format=torch.channels_last)  # as the trainer does
    return global_pool(backbone(patches)[-1])


class LateFusion(nn.Module):
    """Late-fusion siamese network: the shared backbone on every patch alone, pooled last-block
    features concatenated, a small MLP to the classes: (N, K, C, p, p) -> (N, num_classes)."""

    def __init__(self, backbone: Backbone, *, num_classes: int, patches: int = 2,
                 hidden: int = 256):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(
            nn.Linear(patches * backbone.out_channels, hidden), nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected patch tuples (N, K, C, p, p), got {tuple(x.shape)}")
        n, k = x.shape[:2]
        # Every patch goes through the same backbone in one call; they meet only in the head.
        feats = embed_patches(self.backbone, x.flatten(0, 1))
        return self.head(feats.view(n, k * feats.shape[1]))


class SinglePatch(nn.Module):
    """The backbone on one patch per sample with a linear head: (N, 1, C, p, p) -> logits."""

    def __init__(self, backbone: Backbone, *, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(embed_patches(self.backbone, x.flatten(0, 1)))


# --------------------------------------------------------------------------------------------
# The tasks.


@dataclasses.dataclass(frozen=True)
class PatchGridTask(Task):
    """What every task on the 3x3 patch grid shares: the grid settings, the colour handling
    and how a whole image is shown to the patch-trained backbone."""

    patch: int = 16  # patch side in pixels (>= 16 for the 4-block backbone)
    gap: int = 7  # pixels between neighbouring grid cells (> 2 * jitter: patches never touch)
    jitter: int = 1  # each patch moves by up to this many pixels in each direction
    normalise: bool = True  # per-patch mean and std normalisation
    colour_drop: bool = False  # keep one random channel per patch, noise in the others
    projection: bool = False  # remove the green-magenta axis from every pixel
    aberration: float = 0.0  # synthetic chromatic aberration added to the images (shortcut lab)

    min_patch = 16  # the default 4-block backbone halves the size 4 times
    samples_per_image = 1

    def __post_init__(self):
        check_geometry(patch=self.patch, gap=self.gap, jitter=self.jitter,
                       min_patch=self.min_patch)
        if not 0 <= self.aberration < 0.5:
            raise ValueError(f"aberration must lie in [0, 0.5), got {self.aberration!r}")

    @property
    def min_image_size(self) -> int:
        return grid_extent(patch=self.patch, gap=self.gap, jitter=self.jitter)

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        """Whole-image steps before cutting: the synthetic aberration, if asked for."""
        check_images(images, min_size=self.min_image_size)
        if self.aberration:
            images = chromatic_aberration(to_float(images), strength=self.aberration)
        return images

    def prepare_patches(self, patches: torch.Tensor, *, generator: torch.Generator
                        ) -> torch.Tensor:
        """The countermeasures on cut patches (..., C, p, p): projection, colour dropping,
        per-patch normalisation, each only if switched on. uint8 patches come back as float
        in [0, 1] (patches are cut before the conversion: 16x16 patches are a fraction of an
        image's pixels)."""
        patches = to_float(patches)
        if self.projection:
            patches = project_out_green_magenta(patches)
        if self.colour_drop:
            patches = drop_colours(patches, sample_colour_drop(patches.shape,
                                                               generator=generator))
        if self.normalise:
            patches = normalise_patches(patches)
        return patches

    def probe_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """How the patch-trained backbone sees a whole image in the probe: the whole image at
        once (the backbone is fully convolutional), prepared like one big patch: projected if
        projection is on, one informative channel (the gray level) if colour dropping is on,
        normalised by its own mean and std."""
        if self.projection:
            images = project_out_green_magenta(images)
        if self.colour_drop and images.shape[1] > 1:
            gray = images.mean(1, keepdim=True).expand_as(images).contiguous()
            keep = torch.ones(images.shape[0], dtype=torch.long)  # gray in the green channel
            images = drop_colours(gray, {"keep": keep, "noise": torch.zeros_like(images)})
        if self.normalise:
            images = normalise_patches(images)
        return images


@dataclasses.dataclass(frozen=True)
class RelativePatchTask(PatchGridTask):
    """Relative patch location as a pretext task (see the module docstring)."""

    name = "relative_patch"
    class_names = CLASS_NAMES
    num_classes = 8

    def make_batch(self, images: torch.Tensor, *, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.prepare_images(images)
        params = sample_params(images.shape[0], image_size=tuple(images.shape[-2:]),
                               patch=self.patch, gap=self.gap, jitter=self.jitter,
                               generator=generator)
        inputs, targets = make_pairs(images, params, patch=self.patch, gap=self.gap,
                                     jitter=self.jitter)
        return self.prepare_patches(inputs, generator=generator), targets

    def build_model(self, backbone: Backbone) -> nn.Module:
        return LateFusion(backbone, num_classes=self.num_classes)


@dataclasses.dataclass(frozen=True)
class AbsolutePositionTask(PatchGridTask):
    """Shortcut detector: one patch alone -> which of the 9 grid cells it was cut from.

    Scene content tells the row only weakly (sky above, ground below) and the column hardly at
    all (objects stand anywhere left to right), so a network that finds the column far above
    chance reads it from something else, such as colour fringes from chromatic aberration.
    Inputs (N, 1, C, p, p), targets (N,) in 0..8 row-major.
    """

    name = "absolute_position"
    class_names = tuple(f"row {r}, col {c}" for r in range(3) for c in range(3))
    num_classes = 9

    def make_batch(self, images: torch.Tensor, *, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.prepare_images(images)
        n = images.shape[0]
        params = sample_params(n, image_size=tuple(images.shape[-2:]), patch=self.patch,
                               gap=self.gap, jitter=self.jitter, generator=generator)
        cell = torch.randint(0, 9, (n,), generator=generator)
        cells = torch.stack([cell // 3, cell % 3], 1)
        corners = cell_corner(cells, params["origin"], params["jitter"][:, 0], patch=self.patch,
                              gap=self.gap, jitter=self.jitter)
        patches = cut_patches(images, corners.unsqueeze(1), patch=self.patch)
        return self.prepare_patches(patches, generator=generator), cell.to(images.device)

    def build_model(self, backbone: Backbone) -> nn.Module:
        return SinglePatch(backbone, num_classes=self.num_classes)


def position_accuracy(logits: torch.Tensor, cells: torch.Tensor) -> dict[str, float]:
    """Accuracy of absolute-position predictions (N, 9) against cells (N,): the whole cell
    (chance 1/9), its row and its column (chance 1/3 each)."""
    pred = logits.argmax(1).cpu()
    cells = cells.cpu()
    return {"cell": (pred == cells).float().mean().item(),
            "row": (pred // 3 == cells // 3).float().mean().item(),
            "column": (pred % 3 == cells % 3).float().mean().item()}


@torch.no_grad()
def patch_features(backbone: Backbone, task: PatchGridTask, patches: torch.Tensor, *,
                   batch_size: int = 512) -> list[torch.Tensor]:
    """Features of single patches (M, C, p, p) prepared as in training (projection, per-patch
    normalisation; no random colour dropping): one globally pooled (M, D_b) per block."""
    was_training = backbone.training
    backbone.eval()
    try:
        out = []
        for i in range(0, len(patches), batch_size):
            x = patches[i:i + batch_size]
            if task.projection:
                x = project_out_green_magenta(x)
            if task.normalise:
                x = normalise_patches(x)
            out.append([global_pool(f) for f in backbone(x)])
        return [torch.cat(parts) for parts in zip(*out)]
    finally:
        backbone.train(was_training)


def patch_average_features(backbone: Backbone, task: PatchGridTask, images: torch.Tensor
                           ) -> dict[str, torch.Tensor]:
    """The other way to apply a patch-trained backbone to a whole image: cut the 9 grid
    patches, embed each as in training, average over them: {"block1": (N, D1), ...}."""
    feats: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), 256):
        grid = grid_patches(to_float(images[i:i + 256]), patch=task.patch, gap=task.gap)
        n = grid.shape[0]
        for b, f in enumerate(patch_features(backbone, task, grid.flatten(0, 1))):
            feats.setdefault(f"block{b + 1}", []).append(f.view(n, 9, -1).mean(1))
    return {k: torch.cat(v) for k, v in feats.items()}

