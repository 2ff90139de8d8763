"""SimCLR: in a batch of augmented views, find the one that comes from the same image.

Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020, https://arxiv.org/abs/2002.05709. Each image of a batch of N is
augmented twice; of the 2N views, the two of one image form a positive pair, and each view must
pick its partner out of the other 2N - 1, the remaining 2(N - 1) serving as its negatives.

Exemplar-CNN made every seed patch a class of its own, with one row of classifier weights per
image, which cannot grow to a whole dataset. Contrastive learning keeps "every image is its own
class" but drops the weights: the other views in the batch are the classes, compared with the
view by cosine similarity.

Paper details kept here:

- two views of every image, each a fresh composition of every enabled family: a random resized
  crop (8-100% of the image's area, aspect ratio 3/4-4/3 drawn log-uniformly, resized to the
  image's size) with a horizontal flip half of the time; colour jitter with probability 0.8
  (brightness, contrast and saturation multiplied by factors in [1 - 0.8s, 1 + 0.8s], hue
  shifted by up to 0.2s of the colour circle, s = ``strength``: 1 on ImageNet, 0.5 on
  CIFAR-10); grayscale with probability 0.2. Gaussian blur, used on ImageNet only, is left out
  (as in the paper's CIFAR-10 runs);
- a projection head, an MLP g(h) = W2 ReLU(BN(W1 h)) on the pooled backbone features h; the
  loss acts on z = g(h), but h is the representation to keep: the paper found the layer
  before the head better for downstream tasks than the head's output (see :func:`probe_head`);
- the NT-Xent loss, eq. (1): l(i, j) = -log exp(sim(z_i, z_j) / t) / sum_{k != i}
  exp(sim(z_i, z_k) / t), sim the cosine similarity, t the temperature, averaged over both
  orders of every positive pair.

NT-Xent is a cross-entropy: the logits of a view are its similarities / t to the other views,
the target is its partner's position among them. So the shared training loop trains SimCLR
unchanged, and the "accuracy" it records is how often a view's nearest neighbour (cosine) among
the candidates is its partner.

Views are compared within groups of ``group`` images (2 x group views), so that the number of
candidates, and with it ``num_classes`` and ``chance``, does not depend on the batch size; with
``group`` = the images of a training batch (the default suits the quick profile's 128 views),
every view is compared with the whole batch, as in the paper. A smaller last group has fewer
candidates: the missing ones get the logit :data:`NO_CANDIDATE`, which no softmax can choose.

Two departures from the paper, sized for CPU minutes, are the defaults; ``SimCLRTask(view_size=0,
min_scale=0.08)`` is the paper's setting. Views are resized to ``view_size`` = 32 px rather than
to the image's size (the paper's CIFAR-10 views are 32 px too): a step on 64 px scenes then costs
a fraction of one on full-size views. And the smallest crop is ``min_scale`` = 0.3 of the
image's area rather than 0.08: on the scenes, with a budget of CPU minutes, the paper's smaller
crops left the features below a random network's.

Two simplifications of torchvision's transforms, which the paper used: the four jitter
operations run in a fixed order (brightness, contrast, saturation, hue) instead of a random one,
and a crop side longer than the image is cut to the image instead of drawing again.

Shapes: ``images`` (N, C, H, W), uint8 or float in [0, 1] -> ``inputs`` (2N, C, H, W), the two
views of image i at 2i and 2i + 1; ``targets`` (2N,) in 0..2 x group - 2.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from ..data import Dataset, to_float
from ..models import Backbone, Classifier, LinearHead, global_pool
from ..probe import probe_features
from .base import Task
from .ops import check_batch
from .exemplar import hsv_to_rgb, rgb_to_hsv

SCALE = (0.08, 1.0)
"""Range of the crop's area, as a share of the image's."""
RATIO = (3 / 4, 4 / 3)
"""Range of the crop's aspect ratio (width / height, relative to the image's), log-uniform."""
FLIP_P = 0.5
"""Probability of a horizontal flip."""
JITTER_P = 0.8
"""Probability that colour jitter is applied to a view."""
GRAYSCALE_P = 0.2
"""Probability that a view is turned gray."""
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""Luma weights of red, green and blue (ITU-R 601, as torchvision's grayscale)."""
NO_CANDIDATE = -1e4
"""The logit of a missing candidate (a smaller last group): exp() of it is exactly 0 in float32
next to any similarity / temperature (at most 1 / 0.01 = 100 in size)."""

FAMILIES = ("crop", "flip", "colour_jitter", "grayscale")
"""The augmentation families, by the task option that switches each one."""

_COLUMNS = ("area", "log_ratio", "top", "left", "flip", "jitter", "brightness", "contrast",
            "saturation", "hue", "grayscale")
"""The columns of the one uniform draw of :func:`sample_params`, in draw order."""


# --------------------------------------------------------------------------- parameters

def identity_params(n: int) -> dict[str, torch.Tensor]:
    """Parameters that leave every view exactly as its image."""
    return {"box": torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(n, 1),
            "flip": torch.zeros(n, dtype=torch.bool),
            "brightness": torch.ones(n), "contrast": torch.ones(n),
            "saturation": torch.ones(n), "hue": torch.zeros(n),
            "grayscale": torch.zeros(n, dtype=torch.bool)}


def sample_params(n: int, *, families: tuple[str, ...] = FAMILIES,
                  scale: tuple[float, float] = SCALE, strength: float = 0.5,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One random augmentation per view, for the enabled ``families`` (the others get identity
    parameters), all from one uniform draw (n, 11) of ``generator``, so switching a family off
    leaves the other families' values unchanged.

    Returns (n,) tensors, except ``box`` (n, 4): top, left, height, width of the crop as shares
    of the image's height and width; ``flip`` and ``grayscale`` are bool; ``brightness``,
    ``contrast`` and ``saturation`` are factors (1: no change), ``hue`` a shift as a share of
    the colour circle. A view without jitter has factors 1 and shift 0.
    """
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown augmentation families {sorted(unknown)}; "
                         f"choose from {FAMILIES}")
    _check_scale(scale)
    _check_strength(strength)
    u = dict(zip(_COLUMNS, torch.rand(n, len(_COLUMNS), generator=generator).T))
    p = identity_params(n)
    if "crop" in families:
        area = scale[0] + u["area"] * (scale[1] - scale[0])
        lo, hi = math.log(RATIO[0]), math.log(RATIO[1])
        ratio = torch.exp(lo + u["log_ratio"] * (hi - lo))
        width = (area * ratio).sqrt().clamp(max=1.0)
        height = (area / ratio).sqrt().clamp(max=1.0)
        p["box"] = torch.stack([u["top"] * (1 - height), u["left"] * (1 - width),
                                height, width], 1)
    if "flip" in families:
        p["flip"] = u["flip"] < FLIP_P
    if "colour_jitter" in families:
        on = u["jitter"] < JITTER_P
        amount = 0.8 * strength
        for key in ("brightness", "contrast", "saturation"):
            factor = (1 + amount * (2 * u[key] - 1)).clamp_min(0.0)
            p[key] = torch.where(on, factor, p[key])
        p["hue"] = torch.where(on, 0.2 * strength * (2 * u["hue"] - 1), p["hue"])
    if "grayscale" in families:
        p["grayscale"] = u["grayscale"] < GRAYSCALE_P
    return p


# --------------------------------------------------------------------------- augmentations

def crop_resize_flip(images: torch.Tensor, box: torch.Tensor, flip: torch.Tensor, *,
                     size: int | None = None) -> torch.Tensor:
    """Cut box[i] (top, left, height, width, shares of the image's sides) out of images[i],
    resize it to ``size`` x ``size`` pixels (None: the image's size; bilinear, points beyond
    the image take the nearest edge pixel) and mirror it left-right where flip[i]:
    (N, C, H, W) -> (N, C, size, size)."""
    check_batch(images)
    n = images.shape[0]
    if size is not None:
        _check_view_size(size)
    h, w = (size, size) if size else images.shape[-2:]
    box = box.to(images.device, images.dtype)
    if box.shape != (n, 4):
        raise ValueError(f"box must be (N, 4) = top, left, height, width per image for "
                         f"{n} images, got {tuple(box.shape)}")
    top, left, height, width = box.unbind(1)
    sign = 1 - 2 * flip.to(images.device, images.dtype)  # -1: read the columns backwards
    # grid_sample's coordinates run from -1 to 1 across the image; the crop is an axis-aligned
    # box, so x depends on the column only and y on the row only (no affine_grid needed)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=images.dtype, device=images.device)
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=images.dtype, device=images.device)
    gx = (2 * left + width - 1)[:, None] + (width * sign)[:, None] * xs  # (N, W)
    gy = (2 * top + height - 1)[:, None] + height[:, None] * ys  # (N, H)
    grid = torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], -1)
    return nn.functional.grid_sample(images.contiguous(), grid, mode="bilinear",
                                     padding_mode="border", align_corners=False)


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images (N, 3, H, W) -> (N, 1, H, W); gray images are returned as they are."""
    _check_colour_channels(images)
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype, device=images.device)
    return torch.einsum("nchw,c->nhw", images, weights).unsqueeze(1)


def _blend(images, other, factor):
    """factor * images + (1 - factor) * other, clamped to [0, 1] (factor (N,))."""
    f = factor.view(-1, 1, 1, 1)
    return (f * images + (1 - f) * other).clamp_(0, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Multiply every pixel of images[i] by factor[i], clamped to [0, 1]."""
    return (images * factor.to(images).view(-1, 1, 1, 1)).clamp_(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend images[i] with its mean gray level by factor[i] (0: flat gray, 1: unchanged)."""
    mean = grayscale(images).mean((1, 2, 3), keepdim=True)
    return _blend(images, mean, factor.to(images))


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend images[i] with its own gray version by factor[i] (0: gray, 1: unchanged);
    gray images (C=1) are unchanged."""
    if images.shape[1] == 1:
        return images
    return _blend(images, grayscale(images), factor.to(images))


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Turn the hue of images[i] by shift[i] of the colour circle (HSV); gray images (C=1)
    are unchanged."""
    if images.shape[1] == 1:
        return images
    hsv = rgb_to_hsv(images.clamp(0, 1))
    hue = hsv[:, 0] + shift.to(images).view(-1, 1, 1)
    hsv[:, 0] = hue - hue.floor()
    return hsv_to_rgb(hsv)


def colour_jitter(images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Brightness, contrast, saturation, then hue, with one parameter set per image."""
    _check_colour_channels(images)
    out = adjust_brightness(images, params["brightness"])
    out = adjust_contrast(out, params["contrast"])
    out = adjust_saturation(out, params["saturation"])
    return adjust_hue(out, params["hue"])


def random_grayscale(images: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """images[i] turned gray (its luma in every channel) where flags[i]."""
    flags = flags.to(images.device).view(-1, 1, 1, 1)
    return torch.where(flags, grayscale(images).expand_as(images), images)


def apply(images: torch.Tensor, params: dict[str, torch.Tensor], *, size: int | None = None
          ) -> torch.Tensor:
    """Deterministic part: crop, resize to ``size`` (None: the image's size) and flip, then
    colour jitter, then grayscale: one view of each image, (N, C, H, W) in [0, 1] ->
    (N, C, size, size) in [0, 1]."""
    check_batch(images)
    out = crop_resize_flip(images, params["box"], params["flip"], size=size)
    out = colour_jitter(out, params)
    return random_grayscale(out, params["grayscale"])


def two_views(images: torch.Tensor, params: dict[str, torch.Tensor], *,
              size: int | None = None) -> torch.Tensor:
    """Both views of every image: (N, C, H, W) and parameters for 2N views ->
    (2N, C, size, size) (None: the image's size), the views of image i at 2i and 2i + 1."""
    check_batch(images)
    return apply(images.repeat_interleave(2, dim=0), params, size=size)


# --------------------------------------------------------------------------- the loss

def partner_targets(n_views: int, *, group: int, device=None) -> torch.Tensor:
    """The target of every view: its partner's position among the other views of its group.

    Views 2k and 2k + 1 are partners; a view's candidates are the views of its group in order,
    itself left out, so the partner of view r (r counted within the group) sits at r rounded
    down to even: (n_views,).
    """
    _check_group(group)
    if n_views % 2:
        raise ValueError(f"views come in pairs: need an even number of views, got {n_views}")
    r = torch.arange(n_views, device=device) % (2 * group)
    return r - r % 2


def nt_xent_logits(z: torch.Tensor, *, temperature: float, group: int) -> torch.Tensor:
    """Cosine similarity / temperature of every view to the other views of its group:
    z (2N, D) -> logits (2N, 2 x group - 1); missing candidates (a smaller last group) get
    :data:`NO_CANDIDATE`. With :func:`partner_targets`, ``cross_entropy`` of these logits is
    the NT-Xent loss; computed in float32 even under mixed precision."""
    _check_group(group)
    _check_temperature(temperature)
    if z.ndim != 2 or len(z) % 2:
        raise ValueError(f"need projections (2N, D) of pairs of views, got {tuple(z.shape)}")
    n, size = len(z), 2 * group
    groups = -(-n // size)
    with torch.autocast(z.device.type, enabled=False):  # similarities near 1 need float32
        z = nn.functional.normalize(z.float(), dim=1)
        z = nn.functional.pad(z, (0, 0, 0, groups * size - n)).view(groups, size, -1)
        sim = torch.bmm(z, z.transpose(1, 2)).div_(temperature)  # (groups, size, size)
    real = (torch.arange(groups * size, device=z.device) < n).view(groups, 1, size)
    sim = sim.masked_fill(~real, NO_CANDIDATE)
    # leave out each view's similarity to itself: the rows lose their diagonal entry
    off_diagonal = ~torch.eye(size, dtype=torch.bool, device=z.device)
    return sim[:, off_diagonal].view(groups * size, size - 1)[:n]


def nt_xent(z: torch.Tensor, *, temperature: float, group: int) -> torch.Tensor:
    """The NT-Xent loss of projections z (2N, D), partners at 2k and 2k + 1 (a scalar)."""
    logits = nt_xent_logits(z, temperature=temperature, group=group)
    targets = partner_targets(len(z), group=group, device=z.device)
    return nn.functional.cross_entropy(logits, targets)


# --------------------------------------------------------------------------- the model

class SimCLRModel(Classifier):
    """Backbone + projection head; ``forward`` gives the NT-Xent logits of a batch of view
    pairs (2N, C, H, W) -> (2N, 2 x group - 1), ``project`` the projections z (2N, D)."""

    def __init__(self, backbone: Backbone, head: nn.Module, *, temperature: float,
                 group: int):
        super().__init__(backbone, head)
        self.temperature, self.group = temperature, group

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """z = g(h): the projection head on the pooled last block."""
        return super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nt_xent_logits(self.project(x), temperature=self.temperature, group=self.group)


@torch.no_grad()
def head_features(model: SimCLRModel, images: torch.Tensor, *, batch_size: int = 256
                  ) -> dict[str, torch.Tensor]:
    """Frozen features of whole images before and after the projection head, in eval() mode:
    {"backbone": h (N, C) the pooled last block, "projection": z = g(h) (N, D)}."""
    was_training = model.training
    model.eval()
    out = {"backbone": [], "projection": []}
    try:
        for i in range(0, len(images), batch_size):
            h = global_pool(model.backbone(to_float(images[i:i + batch_size]))[-1])
            out["backbone"].append(h)
            out["projection"].append(model.head(h))
    finally:
        model.train(was_training)
    return {k: torch.cat(v).float() for k, v in out.items()}


def probe_head(model: SimCLRModel, dataset: Dataset, *, seed: int = 0):
    """The probe protocol (linear with L2 chosen on validation, and k-NN) on h and on z = g(h):
    a :class:`~ssl_teach.probe.ProbeResult` whose "blocks" are "backbone" and "projection"."""
    dataset.require_labels("the probe of the projection head")
    return probe_features(head_features(model, dataset.train_images), dataset.train_labels,
                          head_features(model, dataset.test_images), dataset.test_labels,
                          num_classes=dataset.num_classes, seed=seed)


# --------------------------------------------------------------------------- reading a network

@torch.no_grad()
def project(model: SimCLRModel, views: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """The projections z = g(h) of ``views`` (N, C, H, W) in eval() mode, float32: (N, D)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        return torch.cat([model.project(to_float(views[i:i + batch_size]).to(device)).float()
                          for i in range(0, len(views), batch_size)]).cpu()
    finally:
        model.train(was_training)


def partner_found(z: torch.Tensor, *, group: int) -> float:
    """Share of views whose most similar view (cosine) among the other views of its group is
    its partner: the pretext "accuracy" with ``group`` images, 2 x group - 1 candidates."""
    logits = nt_xent_logits(z, temperature=1.0, group=group)
    return (logits.argmax(1) == partner_targets(len(z), group=group)).float().mean().item()


def negative_weights(z: torch.Tensor, *, temperature: float, group: int) -> torch.Tensor:
    """How the NT-Xent loss of each view spreads its push over the view's negatives.

    The gradient of a view's loss with respect to its similarity to negative k is
    p_k / temperature, p the softmax over all its candidates; the shares p_k / sum of the
    negatives' p tell which negatives the loss pushes away hardest. Returns those shares,
    each row sorted from the most similar negative down: (2N, 2 x group - 2). Needs full groups
    (2N a multiple of 2 x group)."""
    if len(z) % (2 * group):
        raise ValueError(f"negative_weights needs full groups: {len(z)} views are not a "
                         f"multiple of 2 x group = {2 * group}")
    logits = nt_xent_logits(z, temperature=temperature, group=group)
    partner = partner_targets(len(z), group=group)
    keep = torch.ones_like(logits, dtype=torch.bool)
    keep[torch.arange(len(z)), partner] = False
    negatives = logits[keep].view(len(z), -1)
    return negatives.softmax(1).sort(1, descending=True).values


# --------------------------------------------------------------------------- checks

def _check_colour_channels(images):
    check_batch(images)
    if images.shape[1] not in (1, 3):
        raise ValueError(f"colour augmentations need RGB (3 channels) or gray (1) images, got "
                         f"{images.shape[1]} channels: switch colour_jitter and grayscale off")


def _check_group(group):
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise ValueError(f"group (images whose views are compared together) must be a "
                         f"positive int, got {group!r}")


def _check_temperature(temperature):
    if not 0.01 <= temperature <= 10:
        raise ValueError(f"temperature must lie in [0.01, 10] (the paper tries 0.05 to 1), "
                         f"got {temperature!r}")


def _check_scale(scale):
    if not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"crop scale must be (low, high) with 0 < low <= high <= 1 (shares "
                         f"of the image's area), got {scale!r}")


def _check_view_size(size, minimum: int = 1, why: str = ""):
    if isinstance(size, bool) or not isinstance(size, int) or size < minimum:
        raise ValueError(f"view size must be an int of at least {minimum} pixels{why}, "
                         f"got {size!r}")


def _check_strength(strength):
    if not 0 <= strength <= 2.5:
        raise ValueError(f"colour jitter strength must lie in [0, 2.5] (the paper uses 0.5 "
                         f"on CIFAR-10 and 1 on ImageNet), got {strength!r}")


# --------------------------------------------------------------------------- the task

@dataclasses.dataclass(frozen=True)
class SimCLRTask(Task):
    """SimCLR as a pretext task (see the module docstring).

    The training budget counts views: each image gives two (``samples_per_image``), so a batch
    of 128 samples holds 64 images.
    """

    temperature: float = 0.2
    group: int = 64  # images whose views are compared together (the batch, in the paper)
    projection_dim: int = 128  # size of z (the paper: 128)
    hidden: int = 0  # width of the projection head's hidden layer (0: the backbone's width)
    min_scale: float = 0.3  # smallest crop, as a share of the image's area (the paper: 0.08)
    view_size: int = 32  # side of the views in pixels (0: the image's; see the module docstring)
    strength: float = 0.5  # colour jitter strength s
    crop: bool = True
    flip: bool = True
    colour_jitter: bool = True
    grayscale: bool = True

    name = "simclr"
    samples_per_image = 2  # two views of every image
    min_image_size = 16  # the default backbone halves its input 4 times (views and images)

    def __post_init__(self):
        _check_temperature(self.temperature)
        _check_group(self.group)
        _check_scale((self.min_scale, 1.0))
        _check_strength(self.strength)
        if self.view_size:
            _check_view_size(self.view_size, self.min_image_size,
                             " (the backbone halves its input 4 times; 0: the image's size)")
        if self.projection_dim < 1 or self.hidden < 0:
            raise ValueError(f"need projection_dim >= 1 and hidden >= 0 (0: the backbone's "
                             f"width), got {self.projection_dim} and {self.hidden}")

    @property
    def num_classes(self) -> int:
        """Candidates of every view: the other views of its group."""
        return 2 * self.group - 1

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(f"candidate {i}" for i in range(self.num_classes))

    @property
    def families(self) -> tuple[str, ...]:
        """The enabled augmentation families."""
        return tuple(f for f in FAMILIES if getattr(self, f))

    def sample_params(self, n_views: int, *, generator: torch.Generator) -> dict:
        """The augmentation parameters of ``n_views`` views with this task's settings."""
        return sample_params(n_views, families=self.families, scale=(self.min_scale, 1.0),
                             strength=self.strength, generator=generator)

    def make_batch(self, images: torch.Tensor, *, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two views of every image, (2N, C, H, W), and each view's partner position (2N,)."""
        check_batch(images)
        images = to_float(images)
        params = self.sample_params(2 * images.shape[0], generator=generator)
        inputs = two_views(images, params, size=self.view_size or None)
        return inputs, partner_targets(len(inputs), group=self.group, device=inputs.device)

    def build_model(self, backbone: Backbone) -> SimCLRModel:
        width = backbone.out_channels
        head = LinearHead(width, self.projection_dim, hidden=self.hidden or width)
        return SimCLRModel(backbone, head, temperature=self.temperature, group=self.group)

    def probe_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """Whole images go in as they are (augmentations belong to the pretext data only)."""
        return images
