"""Exemplar-CNN: every seed patch is its own class; tell the transformed copies apart.

Dosovitskiy, Springenberg, Riedmiller & Brox, "Discriminative Unsupervised Feature Learning
with Convolutional Neural Networks", NIPS 2014; extended in TPAMI 2016,
https://arxiv.org/abs/1406.6909. "We sample N patches of size 32x32 pixels from different
images at varying positions and scales [...] with probability proportional to mean squared
gradient magnitude within the patch [...] each of the seed patches is subjected to K random
transformations [...] the resulting surrogate classes" are then told apart by a softmax
classifier over N classes (N from 50 up to 32,000 in the paper).

Paper details kept here:

- seed patches come from different unlabeled images, at positions drawn with probability
  proportional to the patch's mean (squared, by default) gradient magnitude, so they land on
  objects and edges rather than on flat sky, and at several scales: a seed at scale ``s``
  covers ``s * P`` image pixels and is resampled to the P x P patch (``seed_scales``; the
  defaults, 0.625 to 0.75, cover 20 to 24 px of a 64 px image, around the third of the image
  side that the paper's 32 px patches cover of 96 px STL-10 images);
- one surrogate class per seed; every training sample is a fresh random transformation of
  its seed, composed of every enabled family, with the paper's ranges:
  translation (up to 0.2 of the patch side, each axis), scale (x0.7-1.4), rotation (+-20°),
  contrast on the principal colour components (each component's projection x0.5-2), HSV
  saturation and value raised to a power (0.25-4), multiplied (0.7-1.4) and shifted
  (+-0.1), and a hue shift (+-0.1 of the colour circle);
- multiplicative factors are drawn log-uniformly, so 1 (no change) sits in the middle of the
  range and x0.5 is as likely as x2;
- the seed is cut with the margin of real image around it that its largest transformation
  needs (``context`` pixels, computed by :func:`required_context`: 25 px around a 32 px patch
  for the paper's ranges), so zooming out, turning and shifting show image content, never
  mirrored padding. The quick and full profiles train on 64 px images, where an 82 px window
  fits only at a scale below 1 (the region is enlarged to the window): one more reason for
  the seed scales above;
- the ``full`` profile uses 16,000 surrogate classes, 625 transformed samples of each on its
  budget; the ``quick`` profile 500 classes (CPU minutes).

Everything is batched on tensors with one random parameter set per sample: one
``affine_grid``/``grid_sample`` for the geometry, a 3x3 colour matrix for the principal
components, and a vectorised RGB<->HSV for the rest. On grayscale images (C=1) the principal
"colour" component is the intensity (a plain contrast change), the value transform acts on the
intensity, and saturation and hue do nothing.

Shapes: seeds with context ``windows`` (N, C, P+2m, P+2m), uint8 or float in [0, 1] ->
``inputs`` (N, C, P, P), ``targets`` (N,) = the seeds' surrogate classes (0..num_classes-1).
All sizes of a window (P, m) are in window pixels, whatever the scale the seed was cut at.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
from torch import nn

from ..data import Dataset, to_float
from ..models import Backbone, Classifier, LinearHead
from .base import Task
from .ops import check_batch, cut_squares

TRANSLATION = 0.2
"""Largest shift along each axis, as a share of the patch side."""
SCALE = (0.7, 1.4)
"""Range of the zoom factor (>1 enlarges the content)."""
ROTATION = 20.0
"""Largest rotation, in degrees, either way."""
CONTRAST = (0.5, 2.0)
"""Range of the factor on each principal colour component."""
POWER = (0.25, 4.0)
"""Range of the exponent applied to saturation and value."""
MULTIPLY = (0.7, 1.4)
"""Range of the factor on saturation and value."""
SHIFT = 0.1
"""Largest offset added to saturation and value."""
HUE = 0.1
"""Largest hue shift, as a share of the colour circle."""

FAMILIES = ("translation", "scale", "rotation", "contrast", "saturation_value", "hue")
"""The transformation families of the paper, by the task option that switches each one."""

SEED_SCALES = (0.625, 0.6875, 0.75)
"""Default seed scales (image pixels per patch pixel): a 32 px seed covers 20, 22 or 24 px of
the image, around a third of a 64 px image's side as the paper's 32 px seeds of 96 px STL-10
images. The largest needs a 62 px region of a 64 px image for its 82 px window. (Smaller
seeds, enlarged more, probed worse on the quick profile's scenes.)"""


def transformation_reach(patch_size: int, *, families=FAMILIES) -> float:
    """How far from the window's centre, in pixels along either axis, the largest
    transformation of the enabled ``families`` samples: the patch's outermost pixel centre
    (P/2 - 1/2 from its centre), shifted by the largest translation, shrunk by the smallest
    zoom and turned by the largest angle (a square of half-side a turned by t reaches
    a * (cos t + sin t) along an axis)."""
    a = patch_size / 2 - 0.5
    if "translation" in families:
        a += TRANSLATION * patch_size
    if "scale" in families:
        a /= SCALE[0]
    if "rotation" in families:
        t = math.radians(ROTATION)
        a *= math.cos(t) + math.sin(t)
    return a


def required_context(patch_size: int, *, families=FAMILIES) -> int:
    """The smallest context margin m (pixels on each side of the patch) that the enabled
    transformations need: every point they sample lies at or inside the outermost pixel
    centres of the P + 2m window, so bilinear sampling never reads padding."""
    return max(0, math.ceil(transformation_reach(patch_size, families=families) + 0.5
                            - patch_size / 2 - 1e-9))


def seed_geometry(scale: float, *, patch_size: int, context: int) -> tuple[int, int, int]:
    """(patch, context, region): image pixels of a seed cut at ``scale`` — the side of the seed
    patch, its margin on each side, and the side of the region (patch + 2 margins) that is
    resampled to the window of patch_size + 2 * context pixels."""
    if not scale > 0:
        raise ValueError(f"a seed scale is a positive number of image pixels per patch pixel, "
                         f"got {scale!r}")
    patch = max(1, round(scale * patch_size))
    margin = round(scale * context)
    return patch, margin, patch + 2 * margin


# --------------------------------------------------------------------------- seed patches

def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Per-pixel gradient magnitude of the channel-mean image: (N, C, H, W) -> (N, H, W).

    Central differences inside, one-sided at the border (``torch.gradient``).
    """
    check_batch(images)
    gray = to_float(images).mean(1)
    gy, gx = torch.gradient(gray, dim=(-2, -1))
    return torch.sqrt(gx * gx + gy * gy)


def patch_scores(images: torch.Tensor, *, patch_size: int, context: int = 0,
                 power: float = 2.0) -> torch.Tensor:
    """Mean of gradient_magnitude**power over every patch_size x patch_size patch whose
    context margin still fits in the image: (N, H', W'), H' = H - patch_size - 2*context + 1;
    entry [n, i, j] scores the patch whose top-left corner is (context + i, context + j)."""
    _check_patch_fits(images, patch_size, context)
    mag = gradient_magnitude(images).double().pow(power)
    # window sums from an integral image: four look-ups per patch instead of P*P additions
    ii = nn.functional.pad(mag.cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    p = patch_size
    sums = ii[:, p:, p:] - ii[:, :-p, p:] - ii[:, p:, :-p] + ii[:, :-p, :-p]
    h, w = sums.shape[-2:]
    return (sums[:, context:h - context, context:w - context] / p**2).clamp_min(0).float()


def sample_positions(scores: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """One (row, col) per image, drawn with probability proportional to ``scores``
    (N, H', W') -> (N, 2); a flat image (all scores 0) is sampled uniformly."""
    flat = scores.flatten(1).double()
    flat = torch.where(flat.sum(1, keepdim=True) > 0, flat, torch.ones_like(flat))
    idx = torch.multinomial(flat, 1, generator=generator).squeeze(1)
    return torch.stack([idx // scores.shape[-1], idx % scores.shape[-1]], 1)


def cut_windows(images: torch.Tensor, positions: torch.Tensor, *, size: int) -> torch.Tensor:
    """The size x size window with top-left corner positions[i] from images[i] (contiguous,
    so that the transformations read it fast)."""
    return cut_squares(images, positions.unsqueeze(1), size).squeeze(1)


def resize_windows(windows: torch.Tensor, size: int) -> torch.Tensor:
    """Square windows (N, C, R, R) -> (N, C, size, size): bilinear, antialiased when shrinking,
    in the windows' dtype (uint8 rounded); unchanged when R == size."""
    if windows.shape[-1] == size:
        return windows
    out = nn.functional.interpolate(to_float(windows), size=(size, size), mode="bilinear",
                                    antialias=True, align_corners=False)
    if windows.dtype == torch.uint8:
        return out.mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    return out.clamp_(0, 1)


def extract_seeds(images: torch.Tensor, *, num_seeds: int, patch_size: int = 32,
                  context: int = 8, power: float = 2.0, scales=(1.0,),
                  generator: torch.Generator, chunk: int = 1024
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seed patches from ``num_seeds`` different images, placed where gradients are strong,
    each at a scale drawn uniformly from ``scales`` (image pixels per patch pixel).

    A seed at scale s is the region of :func:`seed_geometry` (its patch of about s * P image
    pixels, placed with probability ~ its mean gradient magnitude ** ``power``, and the margin
    around it) resampled to the window. Returns ``windows`` (num_seeds, C, P+2m, P+2m) in the
    images' dtype (the seed patch is the centre P x P, m = ``context``) and ``origins``
    (num_seeds, 4): image index, top, left and side of the seed patch itself, in image
    pixels. With one scale no scale is drawn; with scale 1 the windows are cut as they are.
    """
    check_batch(images)
    scales = tuple(float(s) for s in scales)
    if not scales:
        raise ValueError("scales must hold at least one seed scale, e.g. (1.0,)")
    geometry = [seed_geometry(s, patch_size=patch_size, context=context) for s in scales]
    for s, (patch, margin, region) in zip(scales, geometry):
        if min(images.shape[-2:]) < region:
            raise ValueError(
                f"a seed at scale {s:g} is a {patch}x{patch} px patch with {margin} px of "
                f"context, a {region}x{region} region, but the images are "
                f"{tuple(images.shape[-2:])}: use smaller seed scales (at most "
                f"{min(images.shape[-2:]) / (patch_size + 2 * context):.2f} here), a smaller "
                "patch_size or context, or larger images")
    if not 1 <= num_seeds <= len(images):
        raise ValueError(
            f"cannot draw {num_seeds} seed patches from {len(images)} images (one seed per "
            f"image): ask for at most {len(images)} surrogate classes or use more images")
    which = torch.randperm(len(images), generator=generator)[:num_seeds]
    if len(scales) > 1:
        scale_of = torch.randint(len(scales), (num_seeds,), generator=generator)
    else:
        scale_of = torch.zeros(num_seeds, dtype=torch.long)
    size = patch_size + 2 * context
    windows = torch.empty(num_seeds, images.shape[1], size, size, dtype=images.dtype)
    origins = torch.empty(num_seeds, 4, dtype=torch.long)
    for k, (patch, margin, region) in enumerate(geometry):
        members = (scale_of == k).nonzero().flatten()
        for i in range(0, len(members), chunk):  # bounded memory for many thousands of seeds
            rows = members[i:i + chunk]
            chosen = images[which[rows]]
            scores = patch_scores(chosen, patch_size=patch, context=margin, power=power)
            pos = sample_positions(scores, generator=generator)  # corner of the region
            windows[rows] = resize_windows(cut_windows(chosen, pos, size=region), size)
            origins[rows] = torch.cat([which[rows, None], pos + margin,
                                       torch.full((len(rows), 1), patch)], 1)
    return windows, origins


# --------------------------------------------------------------------------- geometry

def affine_matrices(params: dict[str, torch.Tensor], *, patch_size: int, height: int,
                    width: int) -> torch.Tensor:
    """The (N, 2, 3) ``affine_grid`` matrices that cut a patch_size patch out of the centre of
    (height, width) images, shifted by ``shift`` (N, 2; x, y in pixels), zoomed by ``scale``
    (N,) and turned anticlockwise by ``angle`` (N, degrees).

    A content point p (pixels from the centre) lands at u = scale * R(angle) p + shift in the
    patch; ``affine_grid`` needs the inverse map, from output to input coordinates.
    """
    scale, shift = params["scale"], params["shift"]
    theta = torch.deg2rad(params["angle"])
    cos, sin = torch.cos(theta), torch.sin(theta)
    # inverse rotation R(-angle), image rows grow downwards so anticlockwise flips the sign
    inv = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    inv = inv / scale[:, None, None]
    # normalised coordinates: u_n = u / (P/2), p_n = p / (side/2)
    to_input = torch.tensor([patch_size / width, patch_size / height], dtype=inv.dtype,
                            device=inv.device)
    mat = inv * to_input[None, :, None]
    offset = -(inv @ shift.unsqueeze(-1)).squeeze(-1) * torch.tensor(
        [2 / width, 2 / height], dtype=inv.dtype, device=inv.device)
    return torch.cat([mat, offset.unsqueeze(-1)], -1)


def sampling_grid(mat: torch.Tensor, *, size: int) -> torch.Tensor:
    """What ``affine_grid(mat, [N, C, size, size], align_corners=False)`` returns, (N, size,
    size, 2), computed by broadcasting a row and a column term per sample into the output:
    a few times faster on the CPU than ``affine_grid``'s batched matrix product."""
    n = mat.shape[0]
    s = torch.linspace(-1 + 1 / size, 1 - 1 / size, size, dtype=mat.dtype, device=mat.device)
    grid = torch.empty(n, size, size, 2, dtype=mat.dtype, device=mat.device)
    for axis in (0, 1):  # grid[n, i, j, axis] = m[axis, 0] x_j + m[axis, 1] y_i + m[axis, 2]
        m = mat[:, axis]
        along_x = (m[:, 0:1] * s).unsqueeze(1)  # (N, 1, size)
        along_y = torch.addcmul(m[:, 2:3], m[:, 1:2], s).unsqueeze(2)  # (N, size, 1)
        torch.add(along_x, along_y, out=grid[..., axis])
    return grid


def transform_geometry(images: torch.Tensor, params: dict[str, torch.Tensor], *,
                       patch_size: int) -> torch.Tensor:
    """Shift, zoom and turn each image (bilinear), then cut the central patch_size patch:
    (N, C, H, W) -> (N, C, P, P). Points beyond the image would be mirrored back in; windows
    with :func:`required_context` around the patch never need that."""
    check_batch(images)
    n, c, h, w = images.shape
    if min(h, w) < patch_size:
        raise ValueError(f"images {h}x{w} are smaller than the patch ({patch_size}): "
                         "use a smaller patch_size or larger images")
    p = _like(params, images, ("shift", "scale", "angle"))
    mat = affine_matrices(p, patch_size=patch_size, height=h, width=w)
    grid = sampling_grid(mat, size=patch_size)
    return nn.functional.grid_sample(images.contiguous(), grid, mode="bilinear",
                                     padding_mode="reflection", align_corners=False)


def _like(params: dict[str, torch.Tensor], images: torch.Tensor, keys) -> dict:
    """The parameters ``keys`` on the images' device and in their float type (no copy when
    they are already)."""
    return {k: params[k].to(images.device, images.dtype) for k in keys}


# --------------------------------------------------------------------------- colour

def colour_pca(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean colour (C,) and principal components (C, C), one per row, strongest first, of
    all pixels of ``images`` (N, C, H, W)."""
    check_batch(images)
    pixels = to_float(images).transpose(0, 1).flatten(1).double()  # (C, pixels)
    mean = pixels.mean(1)
    cov = torch.cov(pixels) if pixels.shape[0] > 1 else pixels.var(1, keepdim=True)
    _, vecs = torch.linalg.eigh(cov.reshape(len(mean), len(mean)))  # ascending eigenvalues
    return mean.float(), vecs.flip(1).T.contiguous().float()


def scale_principal_components(images: torch.Tensor, factors: torch.Tensor,
                               mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """Multiply each pixel's projection on every principal colour component (around the mean
    colour) by factors[i, k]: x' = mean + V^T diag(f_i) V (x - mean), clamped to [0, 1]."""
    check_batch(images)
    mean = mean.to(images)
    comps = components.to(images)
    # one C x C colour matrix M and offset mean - M mean per sample, for all its pixels at once
    mats = comps.T @ (factors.to(images)[:, :, None] * comps)  # (N, C, C)
    offset = mean - mats @ mean  # (N, C)
    out = torch.baddbmm(offset.unsqueeze(-1), mats, images.flatten(2))
    return out.view_as(images).clamp_(0, 1)


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> HSV in [0, 1] (hue as a share of the circle): (N, 3, H, W)."""
    h6, s, v = _rgb_to_hsv(images)
    return torch.stack([_wrap(h6.div_(6), 1.0), s, v], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV in [0, 1] -> RGB in [0, 1]: (N, 3, H, W)."""
    h, s, v = hsv.unbind(1)
    return _hsv_to_rgb(h * 6, s, v)


def _wrap(x: torch.Tensor, period: float) -> torch.Tensor:
    """x mod period, in place (``remainder`` is about twice as slow on the CPU)."""
    return x.sub_(x.div(period).floor_().mul_(period))


def _rgb_to_hsv(images):
    """(hue in sixths of the circle, in [-1, 5), saturation, value) of RGB images (N, 3, H, W)
    in [0, 1]."""
    r, g, b = images.unbind(1)
    maxc = images.amax(1)
    delta = maxc - images.amin(1)
    # Measured from the strongest channel (red first, then green, on ties); a gray pixel
    # (delta 0, max == r) gets hue 0. The choice is made with 0/1 weights and lerp: on the
    # CPU that is several times faster than torch.where, and exact for weights 0 and 1.
    hue = torch.lerp(torch.add(r - g, delta, alpha=4), torch.add(b - r, delta, alpha=2),
                     (g == maxc).to(images.dtype))
    hue = torch.lerp(hue, g - b, (r == maxc).to(images.dtype))
    hue = hue.div_(delta.clamp_min(1e-12))
    return hue, delta.div_(maxc.clamp_min(1e-12)), maxc


_HSV_CHANNELS = torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)


def _hsv_to_rgb(h6, s, v):
    """RGB (N, 3, H, W) from hue in sixths of the circle (any real number), S and V planes."""
    # channel n (red 5, green 3, blue 1) = v - v*s*ramp(k), k = (n + h6) mod 6, where
    # ramp(k) = clamp(min(k, 4 - k), 0, 1) = 1 - clamp(|k - 2| - 1, 0, 1): in-place steps
    # with numbers only, several times faster on the CPU than torch.minimum
    k = _wrap(h6.unsqueeze(1) + _HSV_CHANNELS.to(h6.device, h6.dtype), 6.0)
    ramp = k.sub_(2).abs_().sub_(1).clamp_(0, 1)  # 1 - ramp(k)
    vs = (v * s).unsqueeze(1)
    return torch.addcmul(v.unsqueeze(1) - vs, vs, ramp)  # v - vs + vs (1 - ramp)


def _power_multiply_shift(x, power, factor, shift):
    """clamp(x ** power * factor + shift, 0, 1) with one (N,) parameter set per image, in
    place on x (N, H, W) in [0, 1]."""
    # x ** p as exp(p log x): about twice as fast on the CPU, and exact at x = 0 (p > 0)
    x = x.log_().mul_(power.view(-1, 1, 1)).exp_()
    return x.mul_(factor.view(-1, 1, 1)).add_(shift.view(-1, 1, 1)).clamp_(0, 1)


HSV_KEYS = ("sat_power", "sat_factor", "sat_shift", "val_power", "val_factor", "val_shift",
            "hue_shift")


def adjust_hsv(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Saturation and value each raised to a power, multiplied and shifted; hue shifted.

    ``params`` holds (N,) tensors ``sat_power``, ``sat_factor``, ``sat_shift``,
    ``val_power``, ``val_factor``, ``val_shift`` and ``hue_shift``. Grayscale images (C=1)
    get the value transform on their intensity only.
    """
    check_batch(images)
    return _adjust_hsv(images.clamp(0, 1), params)


def _adjust_hsv(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """adjust_hsv of images already in [0, 1] that may be overwritten."""
    p = _like(params, images, HSV_KEYS)
    if images.shape[1] == 1:  # a gray pixel's value is its intensity; no saturation or hue
        return _power_multiply_shift(images[:, 0], p["val_power"], p["val_factor"],
                                     p["val_shift"]).unsqueeze(1)
    if images.shape[1] != 3:
        raise ValueError(f"HSV needs RGB (3 channels) or grayscale (1), got {images.shape[1]}")
    h6, s, v = _rgb_to_hsv(images)  # fresh tensors, s and v in [0, 1]: changed in place
    h6 = h6.add_(6 * p["hue_shift"].view(-1, 1, 1))  # _hsv_to_rgb wraps it around the circle
    s = _power_multiply_shift(s, p["sat_power"], p["sat_factor"], p["sat_shift"])
    v = _power_multiply_shift(v, p["val_power"], p["val_factor"], p["val_shift"])
    return _hsv_to_rgb(h6, s, v)


# --------------------------------------------------------------------------- parameters

def identity_params(n: int, *, channels: int = 3) -> dict[str, torch.Tensor]:
    """Parameters that leave every image as it is (the central patch, unchanged colours)."""
    ones, zeros = torch.ones(n), torch.zeros(n)
    return {"shift": torch.zeros(n, 2), "scale": ones, "angle": zeros,
            "contrast": torch.ones(n, channels),
            "sat_power": ones, "sat_factor": ones, "sat_shift": zeros,
            "val_power": ones, "val_factor": ones, "val_shift": zeros, "hue_shift": zeros}


def _param_columns(channels: int) -> list[tuple[str, int, tuple[float, float], bool]]:
    """(parameter, columns, range, log-uniform?) of the one uniform draw of sample_params, in
    draw order."""
    return [("shift", 2, (-TRANSLATION, TRANSLATION), False), ("scale", 1, SCALE, True),
            ("angle", 1, (-ROTATION, ROTATION), False), ("contrast", channels, CONTRAST, True),
            ("sat_power", 1, POWER, True), ("sat_factor", 1, MULTIPLY, True),
            ("sat_shift", 1, (-SHIFT, SHIFT), False), ("val_power", 1, POWER, True),
            ("val_factor", 1, MULTIPLY, True), ("val_shift", 1, (-SHIFT, SHIFT), False),
            ("hue_shift", 1, (-HUE, HUE), False)]


_FAMILY_KEYS = {"translation": ("shift",), "scale": ("scale",), "rotation": ("angle",),
                "contrast": ("contrast",), "hue": ("hue_shift",),
                "saturation_value": ("sat_power", "sat_factor", "sat_shift", "val_power",
                                     "val_factor", "val_shift")}


@functools.lru_cache(maxsize=64)
def _param_table(patch_size: int, channels: int, families: tuple[str, ...]):
    """The constant rows of sample_params: (low, span, log-uniform?, drawn?, identity) over the
    columns of its one uniform draw (log-uniform columns in log space)."""
    enabled = {key for family in families for key in _FAMILY_KEYS[family]}
    low, high, log, keep, identity = [], [], [], [], []
    for key, width, (lo, hi), is_log in _param_columns(channels):
        scale = patch_size if key == "shift" else 1.0  # shifts are drawn in pixels
        low += [math.log(lo) if is_log else lo * scale] * width
        high += [math.log(hi) if is_log else hi * scale] * width
        log += [is_log] * width
        keep += [key in enabled] * width
        identity += [1.0 if is_log else 0.0] * width  # factor 1, offset 0: no change
    low, high = torch.tensor(low), torch.tensor(high)
    return low, high - low, torch.tensor(log), torch.tensor(keep), torch.tensor(identity)


def sample_params(n: int, *, patch_size: int, channels: int = 3,
                  families: tuple[str, ...] = FAMILIES, generator: torch.Generator
                  ) -> dict[str, torch.Tensor]:
    """One random transformation per sample, the paper's ranges, for the enabled families
    (the others get identity parameters). All parameters come from one uniform draw of
    ``generator`` (n, 11 + channels), so switching a family off leaves the other families'
    values unchanged; multiplicative factors are log-uniform."""
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown transformation families {sorted(unknown)}; "
                         f"choose from {FAMILIES}")
    low, span, log, keep, identity = _param_table(patch_size, channels, tuple(families))
    values = torch.addcmul(low, torch.rand(n, len(low), generator=generator), span)
    values = torch.where(log, values.exp(), values)
    values = torch.where(keep, values, identity).T.contiguous()  # one row per parameter
    params, i = {}, 0
    for key, width, _, _ in _param_columns(channels):
        params[key] = values[i:i + width].T if key in ("shift", "contrast") else values[i]
        i += width
    return params


def apply(images: torch.Tensor, params: dict[str, torch.Tensor], *, patch_size: int,
          mean: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """Deterministic part: geometry, then principal-component contrast, then HSV changes:
    windows (N, C, H, W) -> transformed patches (N, C, P, P) in [0, 1]."""
    out = transform_geometry(images, params, patch_size=patch_size)
    out = scale_principal_components(out, params["contrast"], mean, components)
    return _adjust_hsv(out, params)  # a fresh tensor in [0, 1]: no clamp or copy needed


def _check_patch_fits(images, patch_size, context):
    check_batch(images)
    need = patch_size + 2 * context
    if min(images.shape[-2:]) < need:
        raise ValueError(
            f"a {patch_size}x{patch_size} patch with {context} pixels of context needs images "
            f"of at least {need}x{need}, got {tuple(images.shape[-2:])}: use a smaller "
            "patch_size or context, or larger images")


# --------------------------------------------------------------------------- the task

@dataclasses.dataclass(frozen=True)
class ExemplarTask(Task):
    """Exemplar-CNN as a pretext task (see the module docstring).

    Each training sample is a fresh transformation of its seed, so the paper's "samples per
    class" is the training budget divided by ``num_classes`` (:meth:`samples_per_class`).
    """

    num_classes: int = 500  # N: seed patches = surrogate classes (the paper: up to 32,000)
    patch_size: int = 32
    context: int | None = None  # window pixels of real image around each seed patch; None:
    # what the largest enabled transformation needs (required_context), never less
    gradient_power: float = 2.0  # seeds drawn with probability ~ mean |gradient|**power
    seed: int = 0  # which seed patches are drawn (separate from the training seed)
    seed_scales: tuple[float, ...] = SEED_SCALES  # image pixels per patch pixel of the seeds
    translation: bool = True
    scale: bool = True
    rotation: bool = True
    contrast: bool = True
    saturation_value: bool = True
    hue: bool = True

    name = "exemplar"
    samples_per_image = 1

    def __post_init__(self):
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.patch_size < 16:
            raise ValueError(f"need patch_size >= 16 (the backbone halves it 4 times), got "
                             f"{self.patch_size}")
        need = required_context(self.patch_size, families=self.families)
        if self.context is None:
            object.__setattr__(self, "context", need)
        elif self.context < need:
            raise ValueError(
                f"context={self.context} is too small: the largest transformation of "
                f"{', '.join(self.families) or 'no family'} reaches "
                f"{transformation_reach(self.patch_size, families=self.families):.1f} px from "
                f"the centre of a {self.patch_size} px patch, so the window needs {need} px of "
                f"context on each side (else it samples mirrored padding): use context >= "
                f"{need}, or context=None to have it computed")
        scales = tuple(float(x) for x in self.seed_scales)
        if not scales or min(scales) <= 0:
            raise ValueError(f"seed_scales must be positive numbers (image pixels per patch "
                             f"pixel), e.g. {SEED_SCALES}; got {self.seed_scales!r}")
        object.__setattr__(self, "seed_scales", scales)

    @property
    def window_size(self) -> int:
        """Side of a seed window in its own pixels: the patch and its context on each side."""
        return self.patch_size + 2 * self.context

    @property
    def min_image_size(self) -> int:
        """Seeds are cut with their context at every seed scale, so images need at least the
        largest region's side (and make_batch takes windows of :attr:`window_size`)."""
        return max(seed_geometry(s, patch_size=self.patch_size, context=self.context)[2]
                   for s in self.seed_scales)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(f"seed {i}" for i in range(self.num_classes))

    @property
    def families(self) -> tuple[str, ...]:
        """The enabled transformation families."""
        return tuple(f for f in FAMILIES if getattr(self, f))

    def samples_per_class(self, budget_samples: int) -> float:
        """Transformed samples of each surrogate class seen in training on this budget."""
        return budget_samples / self.num_classes

    def seeds(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """(windows, origins) of the seed patches from the dataset's unlabeled images (see
        :func:`extract_seeds`); the same options give the same seeds."""
        g = torch.Generator().manual_seed(self.seed)
        return extract_seeds(dataset.unlabeled, num_seeds=self.num_classes,
                             patch_size=self.patch_size, context=self.context,
                             power=self.gradient_power, scales=self.seed_scales, generator=g)

    def colour_basis(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean colour and principal components of the seed patches' pixels."""
        m = self.context
        return colour_pca(windows[..., m:windows.shape[-2] - m, m:windows.shape[-1] - m])

    def training_data(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """The seed windows (uint8) and their surrogate classes 0..N-1."""
        windows, _ = self.seeds(dataset)
        # the colour basis is three numbers and a 3x3 matrix: keep it for make_batch
        object.__setattr__(self, "_basis", self.colour_basis(windows))
        return windows, torch.arange(self.num_classes)

    def evaluation_data(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
        """The same seeds: ``predict`` draws fresh transformations from its own generator."""
        return self.training_data(dataset)

    def make_batch(self, images: torch.Tensor, *, generator: torch.Generator,
                   labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform each seed window once: (transformed patches, surrogate classes)."""
        check_batch(images)
        images = to_float(images)
        if min(images.shape[-2:]) < self.window_size:
            raise ValueError(
                f"exemplar needs seed windows of at least {self.window_size}x"
                f"{self.window_size} (patch_size {self.patch_size} + 2 x context "
                f"{self.context}), got {tuple(images.shape[-2:])}: make them with "
                "training_data or extract_seeds")
        if labels is None:
            raise ValueError("exemplar batches need labels= (the surrogate class of every "
                             "seed window, from training_data)")
        params = sample_params(images.shape[0], patch_size=self.patch_size,
                               channels=images.shape[1], families=self.families,
                               generator=generator)
        basis = getattr(self, "_basis", None)
        if basis is None or len(basis[0]) != images.shape[1]:
            basis = self.colour_basis(images)  # no seeds seen yet: use this batch's colours
        mean, comps = basis
        return apply(images, params, patch_size=self.patch_size, mean=mean,
                     components=comps), labels

    def build_model(self, backbone: Backbone) -> nn.Module:
        return Classifier(backbone, LinearHead(backbone.out_channels, self.num_classes))

    @torch.no_grad()
    def accuracy_by_family(self, model: nn.Module, windows: torch.Tensor,
                           labels: torch.Tensor, *, seed: int = 12345,
                           batch_size: int = 256) -> dict[str, float]:
        """Surrogate accuracy of ``model`` with no transformation ("none"), then with each
        family alone (the others switched off), on fresh draws seeded by ``seed``."""
        mean, comps = getattr(self, "_basis", None) or self.colour_basis(windows)
        model = model.eval()
        out = {}
        for family in ("none", *FAMILIES):
            g = torch.Generator().manual_seed(seed)
            right = 0
            for i in range(0, len(windows), batch_size):
                batch = to_float(windows[i:i + batch_size])
                p = sample_params(len(batch), patch_size=self.patch_size,
                                  channels=batch.shape[1],
                                  families=() if family == "none" else (family,), generator=g)
                inputs = apply(batch, p, patch_size=self.patch_size, mean=mean,
                               components=comps)
                right += (model(inputs).argmax(1) == labels[i:i + batch_size]).sum().item()
            out[family] = right / len(windows)
        return out

    def probe_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone is fully convolutional: whole images go in as they are, and the probe
        pools each block's map over the image (as the paper pooled over image quadrants)."""
        return images
