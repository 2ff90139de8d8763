"""Rotation prediction: which of four quarter turns was applied to the image?

Gidaris, Singh & Komodakis, "Unsupervised Representation Learning by Predicting Image
Rotations", ICLR 2018, https://arxiv.org/abs/1803.07728. The network sees an image turned by
0°, 90°, 180° or 270° and must say which; to do so it has to know which way up objects stand.

Paper details kept here:

- exact quarter turns (``torch.rot90``): no interpolation, no black corners, nothing but the
  content tells the angle;
- images are cropped to a square first, because a rotated non-square image changes shape and
  its borders give the label away;
- all four rotations of every image go into the same batch (the paper found this better than
  one random rotation per image);
- augmentation before the turns: the authors' released CIFAR-10 recipe pads every 32 px image
  by 4 zero pixels, crops a random 32 px square out of it and flips it horizontally at random.
  Here flips are on by default and the crop is the option ``crop_pad`` (0: no crop); the
  ``full`` profile, whose 64 px images are CIFAR-10's upsampled twice, pads by 8 px (the same
  shift of the content as 4 px at 32 px). A crop's zero border lands on a random side, and a
  mirror image is still upright, so neither changes the label.

Shapes: ``images`` (N, C, S, S), uint8 or float in [0, 1] -> ``inputs`` (4N, C, S, S),
``targets`` (4N,) in 0..3.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..data import to_float
from ..models import Backbone, Classifier, LinearHead
from .base import Task
from .ops import check_batch, cut_squares

ANGLES = (0, 90, 180, 270)
"""Label k means the image was turned k quarter turns anticlockwise: 0°, 90°, 180°, 270°."""

CLASS_NAMES = tuple(f"{a}°" for a in ANGLES)


def center_square_crop(images: torch.Tensor) -> torch.Tensor:
    """The largest centred square of each image: (N, C, H, W) -> (N, C, S, S), S = min(H, W)."""
    check_batch(images)
    h, w = images.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return images[..., top:top + s, left:left + s]


def rotate(images: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """Turn image i by k[i] quarter turns anticlockwise, exactly (no interpolation).

    ``images`` must be square (N, C, S, S): crop with :func:`center_square_crop` first, or a
    turned image would change shape and its borders would give the angle away.
    """
    check_batch(images)
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(
            f"rotation needs square images, got {tuple(images.shape[-2:])}: "
            "crop them with center_square_crop(images) first")
    k = torch.as_tensor(k, device=images.device).long() % 4
    if k.ndim == 0:
        return torch.rot90(images, int(k), dims=(-2, -1))
    if k.shape != images.shape[:1]:
        raise ValueError(f"need one k per image: k has shape {tuple(k.shape)}, "
                         f"images {tuple(images.shape)}")
    out = torch.empty_like(images)
    for turns in range(4):  # four vectorised groups, not a loop over images
        sel = (k == turns).nonzero().flatten()
        if sel.numel():
            out[sel] = torch.rot90(images[sel], turns, dims=(-2, -1))
    return out


def all_rotations(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations of every image: inputs (4N, C, S, S) and targets (4N,).

    The order is [all images at 0°, all at 90°, all at 180°, all at 270°].
    """
    return angle_set(center_square_crop(images), ANGLES)


def sample_params(n: int, *, generator: torch.Generator, crop_pad: int = 0
                  ) -> dict[str, torch.Tensor]:
    """Random augmentation drawn before the turns: "flip" (n,), a horizontal flip per image (a
    mirror image is still upright, so this does not change the label), and with ``crop_pad``
    > 0 "crop" (n, 2), the (row, column) corner of each random crop in the zero-padded image,
    in 0..2 * crop_pad (crop_pad, crop_pad: the image itself). The flips are drawn first, so
    they do not depend on ``crop_pad``."""
    if not isinstance(crop_pad, int) or crop_pad < 0:
        raise ValueError(f"crop_pad must be an int >= 0 (pixels of zero padding), "
                         f"got {crop_pad!r}")
    params = {"flip": torch.rand(n, generator=generator) < 0.5}
    if crop_pad:
        params["crop"] = torch.randint(0, 2 * crop_pad + 1, (n, 2), generator=generator)
    return params


def pad_crop(images: torch.Tensor, corners: torch.Tensor, *, pad: int) -> torch.Tensor:
    """Random crops as in the released recipe: pad every square image (N, C, S, S) by ``pad``
    zero pixels on each side and cut the S x S square whose top-left pixel is ``corners[i]``
    (row, column in 0..2 * pad) out of image i, all with one gather."""
    check_batch(images)
    corners = torch.as_tensor(corners)
    if corners.shape != (images.shape[0], 2):
        raise ValueError(f"crop corners must have shape ({images.shape[0]}, 2), "
                         f"got {tuple(corners.shape)}")
    if len(corners) and (int(corners.min()) < 0 or int(corners.max()) > 2 * pad):
        raise ValueError(f"crop corners must lie in 0..2 * pad = 0..{2 * pad}, got "
                         f"{int(corners.min())}..{int(corners.max())}")
    padded = nn.functional.pad(images, (pad, pad, pad, pad))
    return cut_squares(padded, corners.unsqueeze(1), images.shape[-1]).squeeze(1)


def apply(images: torch.Tensor, params: dict[str, torch.Tensor], *, crop_pad: int = 0
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic part: :func:`augment`, then all four rotations."""
    return all_rotations(augment(images, params, crop_pad=crop_pad))


def augment(images: torch.Tensor, params: dict[str, torch.Tensor], *, crop_pad: int = 0
            ) -> torch.Tensor:
    """Crop square, then with ``crop_pad`` > 0 the random crop at ``params["crop"]`` (see
    :func:`pad_crop`), and flip where ``params["flip"]`` says: the upright images (N, C, S, S)
    that are then turned."""
    check_batch(images)
    flip = params["flip"].to(images.device)
    if flip.shape != images.shape[:1]:
        raise ValueError(f"params['flip'] must have shape ({images.shape[0]},), "
                         f"got {tuple(flip.shape)}")
    images = center_square_crop(images)
    if crop_pad:
        if "crop" not in params:
            raise ValueError("crop_pad > 0 needs params['crop']: draw the parameters with "
                             "sample_params(..., crop_pad=crop_pad)")
        images = pad_crop(images, params["crop"], pad=crop_pad)
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def rotate_by_angle(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Turn each image by an arbitrary angle with bilinear interpolation and black corners.

    Only for the shortcut experiment: this is what the paper avoids, because the corners and
    the interpolation blur tell the network the angle without looking at the content.
    """
    check_batch(images)
    theta = torch.deg2rad(torch.as_tensor(degrees, dtype=images.dtype, device=images.device))
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(cos)
    # affine_grid maps output coords to input coords, so use the inverse (transposed) rotation
    mat = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], 1)
    grid = nn.functional.affine_grid(mat, list(images.shape), align_corners=False)
    return nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                                     align_corners=False)


ROTATION_SETS = {2: (0, 180), 4: ANGLES, 8: (0, 45, 90, 135, 180, 225, 270, 315)}
"""The angle sets of the ablation: Gidaris et al. train with 2, 4 and 8 rotations on CIFAR-10
and report the four quarter turns best."""


def disc_mask(images: torch.Tensor) -> torch.Tensor:
    """Black out everything outside the disc inscribed in each square image. A 45° turn moves
    the corners out of the frame and brings black ones in; with every input cut to the disc,
    corners tell nothing about the angle."""
    check_batch(images)
    s = images.shape[-1]
    centre = torch.arange(s, device=images.device, dtype=torch.float32) - (s - 1) / 2
    inside = centre.view(-1, 1) ** 2 + centre.view(1, -1) ** 2 <= (s / 2) ** 2
    return images * inside.to(images.dtype)


def angle_set(images: torch.Tensor, angles) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image (square, N, C, S, S) turned by every angle of ``angles``: inputs
    (len(angles) N, C, S, S) in the order [all at angles[0], all at angles[1], ...] and
    targets (len(angles) N,). Quarter turns are exact (``torch.rot90``); with any angle that
    is not a multiple of 90° every input, turned or not, is cut to its inscribed disc
    (:func:`disc_mask`) and the other angles are interpolated (:func:`rotate_by_angle`)."""
    check_batch(images)
    angles = [int(a) % 360 for a in angles]
    quarter = all(a % 90 == 0 for a in angles)
    turned = []
    for a in angles:
        x = torch.rot90(images, a // 90, dims=(-2, -1)) if a % 90 == 0 else rotate_by_angle(
            images, torch.full((len(images),), float(a), device=images.device))
        turned.append(x if quarter else disc_mask(x))
    targets = torch.arange(len(angles), device=images.device).repeat_interleave(len(images))
    return torch.cat(turned), targets


def letterbox(images: torch.Tensor, *, share: float) -> torch.Tensor:
    """Black out the bottom ``share`` of every image, as if a wide photo had been padded to a
    square at the bottom. Only for the shortcut experiment: after a turn, the side where the
    black band lies gives the label away without looking at the content."""
    check_batch(images)
    if not 0.0 <= share < 1.0:
        raise ValueError(f"letterbox share must lie in [0, 1), got {share!r}")
    rows = int(round(images.shape[-2] * share))
    out = images.clone()
    if rows:
        out[..., images.shape[-2] - rows:, :] = 0
    return out


@dataclasses.dataclass(frozen=True)
class RotationTask(Task):
    """Rotation prediction as a pretext task (see the module docstring)."""

    flip: bool = True  # random horizontal flips before turning (augmentation)
    letterbox: float = 0.0  # shortcut study only: black band over this share of the bottom
    crop_pad: int = 0  # random crops of the image zero-padded by this many pixels (0: none)
    rotations: int = 4  # ablation only: 2, 4 (the paper's choice) or 8 angles (ROTATION_SETS)

    name = "rotation"
    min_image_size = 16  # the default 4-block backbone halves the size 4 times

    def __post_init__(self):
        if not isinstance(self.crop_pad, int) or isinstance(self.crop_pad, bool) or (
                self.crop_pad < 0):
            raise ValueError(f"crop_pad must be an int >= 0 (pixels of zero padding around "
                             f"each image before a random crop), got {self.crop_pad!r}")
        if self.rotations not in ROTATION_SETS or isinstance(self.rotations, bool):
            raise ValueError(f"rotations must be one of {', '.join(map(str, ROTATION_SETS))} "
                             f"(the angles {ROTATION_SETS}), got {self.rotations!r}")

    @property
    def angles(self) -> tuple[int, ...]:
        """The angles the network tells apart, in degrees anticlockwise (label i: angles[i])."""
        return ROTATION_SETS[self.rotations]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(f"{a}°" for a in self.angles)

    @property
    def num_classes(self) -> int:
        return self.rotations

    @property
    def samples_per_image(self) -> int:  # every image gives one input per angle per batch
        return self.rotations

    def make_batch(self, images: torch.Tensor, *, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        images = to_float(images)
        params = sample_params(images.shape[0], generator=generator, crop_pad=self.crop_pad)
        if not self.flip:
            params["flip"] = torch.zeros_like(params["flip"])
        if self.letterbox:
            images = letterbox(images, share=self.letterbox)
        return angle_set(augment(images, params, crop_pad=self.crop_pad), self.angles)

    def build_model(self, backbone: Backbone) -> nn.Module:
        return Classifier(backbone, LinearHead(backbone.out_channels, self.num_classes))

    def probe_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """How the trained backbone sees a whole image in the probe: as it is (the letterbox
        of the shortcut study and the disc of the 8-rotation ablation are part of the pretext
        data only)."""
        return images


@dataclasses.dataclass(frozen=True)
class MirrorTask(Task):
    """Diagnosis only (01's exercise 5), not one of the course's tasks: was this image mirrored
    left-right? Every image goes into the batch twice, as it is (label 0) and mirrored (label
    1). Rotation works because the scenes have an up and a down; this asks whether they have a
    left and a right."""

    name = "mirror"
    class_names = ("as it is", "mirrored")
    num_classes = 2
    samples_per_image = 2
    min_image_size = 16

    def make_batch(self, images: torch.Tensor, *, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs [all images as they are, all mirrored] (2N, C, H, W) and targets (2N,); the
        batch has nothing random, so ``generator`` is not drawn from."""
        check_batch(images)
        x = to_float(images)
        targets = torch.arange(2, device=x.device).repeat_interleave(len(x))
        return torch.cat([x, x.flip(-1)]), targets

    def build_model(self, backbone: Backbone) -> nn.Module:
        return Classifier(backbone, LinearHead(backbone.out_channels, self.num_classes))

    def probe_inputs(self, images: torch.Tensor) -> torch.Tensor:
        return images
