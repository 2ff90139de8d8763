"""Jigsaw puzzles: which of a fixed set of permutations shuffled the nine tiles of an image?

Noroozi & Favaro, "Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles",
ECCV 2016, https://arxiv.org/abs/1603.09246. An image is cut into a 3x3 grid of tiles, the tiles
are shuffled by one permutation from a fixed set, and the network must say which one. To put
the tiles back it has to know what object parts look like and how they fit together.

Paper details kept here:

- a 3x3 grid of cells with a random tile crop inside each cell: the gap between tiles and the
  jitter of their positions stop the network from matching edges and lines across tiles;
- every colour channel of every tile is normalised by its own mean and standard deviation, as
  in the authors' released code, so that tiles cannot be matched by their brightness, contrast
  or colour cast (``tile_norm="tile"`` normalises over all channels of a tile together);
- chromatic-aberration guards: a share of images is made grayscale and the colour channels of
  each tile are shifted by a pixel or so against each other (camera lenses shift colours
  towards the image border, which would tell a tile's position without looking at content).
  Every shifted channel stays inside its own cell: tiles are placed at least ``channel_shift``
  pixels inside their cell, so no shift is ever cut short at the image border (a shift cut
  short only at some borders would itself tell where a tile came from);
- the permutation set is chosen greedily for maximal Hamming distance (the average over the
  chosen ones, as in the paper's Algorithm 1, or the minimum): the further apart the orders,
  the less ambiguous the task. The paper's main set has 1000 of the 9! = 362,880 orders
  (``num_permutations=1000``, the ``full`` profile's choice); the ``quick`` profile uses 100.
  :func:`describe_permutation_set` gives a printable line on the distances of a set;
- the context-free network: the same backbone on every tile on its own, the tile features
  concatenated in the shuffled order, then a classifier over the permutation set. No tile
  sees another before the classifier, so low-level continuity cannot be used.

Convention: with permutation ``p``, input position ``i`` holds the tile from grid cell
``p[i]`` (cells row-major, 0 top-left, 8 bottom-right).

Shapes: ``images`` (N, C, H, W), uint8 or float in [0, 1] -> ``inputs`` (N, 9, C, t, t) (tiles
in shuffled order), ``targets`` (N,) indices into the permutation set.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings

import numpy as np
import torch
from torch import nn

from ..cache import CorruptCacheFile, atomic_save, cache_dir, safe_load
from ..data import to_float
from ..models import Backbone, global_pool
from .base import Task
from .ops import check_batch, cut_squares, normalise_each

GRID = 3
NUM_TILES = GRID * GRID
NUM_ORDERS = math.factorial(NUM_TILES)  # 362,880
CRITERIA = ("average", "minimum")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma


# --- the permutation set --------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def all_permutations() -> torch.Tensor:
    """All 9! orders of the tiles in lexicographic order: uint8 (362880, 9)."""
    return torch.tensor(list(itertools.permutations(range(NUM_TILES))), dtype=torch.uint8)


def hamming(perms: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Hamming distance (positions that differ) of every row of ``perms`` to ``perm``."""
    return (perms != perm).sum(-1)


def select_permutations(n: int, *, criterion: str = "average", seed: int = 0) -> torch.Tensor:
    """Greedy choice of ``n`` far-apart orders from all 9!: uint8 (n, 9), computed afresh.

    Start from one random order; then repeatedly add the order whose Hamming distance to the
    chosen ones is largest ("average": by the mean over the chosen ones, "minimum": by the
    nearest chosen one). Ties are broken at random, with a generator seeded by ``seed``.
    """
    _check_set_size(n)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    perms = all_permutations()
    match = _position_table()
    g = torch.Generator().manual_seed(seed)
    first = int(torch.randint(NUM_ORDERS, (1,), generator=g))
    chosen = [first]
    taken = np.zeros(NUM_ORDERS, dtype=bool)
    taken[first] = True
    # Distances to the chosen set, updated with one new row per step (not recomputed).
    # NumPy (one thread) here: these small steps are slower with threads on a busy CPU.
    score = _distances_to(match, perms[first])
    for _ in range(n - 1):
        masked = np.where(taken, -1, score)
        ties = np.flatnonzero(masked == masked.max())
        pick = int(ties[int(torch.randint(len(ties), (1,), generator=g))])
        chosen.append(pick)
        taken[pick] = True
        d = _distances_to(match, perms[pick])
        score = score + d if criterion == "average" else np.minimum(score, d)
    return perms[chosen].clone()


@functools.lru_cache(maxsize=1)
def _position_table() -> np.ndarray:
    """match[9 * i + v, j] = 1 if order j has tile v at position i: uint8 (81, 9!)."""
    perms = all_permutations().long().numpy()
    table = np.zeros((NUM_TILES * NUM_TILES, NUM_ORDERS), dtype=np.uint8)
    table[np.arange(NUM_TILES) * NUM_TILES + perms, np.arange(NUM_ORDERS)[:, None]] = 1
    return table


def _distances_to(match: np.ndarray, perm: torch.Tensor) -> np.ndarray:
    """Hamming distance of all 9! orders to ``perm``: 9 minus the positions they agree on,
    read as nine rows of the position table (fast: no comparison of whole orders)."""
    rows = match[np.arange(NUM_TILES) * NUM_TILES + perm.long().numpy()]
    agree = rows[0].astype(np.int32)
    for row in rows[1:]:
        agree += row
    return NUM_TILES - agree


def permutation_set(n: int = 100, *, criterion: str = "average", seed: int = 0,
                    cache: bool = True) -> torch.Tensor:
    """The permutation set of :func:`select_permutations`, cached on disk: uint8 (n, 9)."""
    _check_set_size(n)
    path = cache_dir() / "jigsaw" / f"permutations-{criterion}-{n}-seed{seed}.pt"
    if cache and path.exists():
        try:
            perms = safe_load(path)
            if isinstance(perms, torch.Tensor) and perms.shape == (n, NUM_TILES):
                return perms
            warnings.warn(f"permutation cache {path} has the wrong shape; selecting again",
                          stacklevel=2)
        except CorruptCacheFile as err:
            warnings.warn(f"{err}; selecting again", stacklevel=2)
    perms = select_permutations(n, criterion=criterion, seed=seed)
    if cache:
        atomic_save(perms, path, best_effort=True)  # a read-only cache: keep the set anyway
    return perms


def random_permutation_set(n: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` distinct orders drawn uniformly from all 9! (for comparison): uint8 (n, 9)."""
    _check_set_size(n)
    idx = torch.randperm(NUM_ORDERS, generator=torch.Generator().manual_seed(seed))[:n]
    return all_permutations()[idx].clone()


def pairwise_hamming(perms: torch.Tensor) -> torch.Tensor:
    """Hamming distances of all pairs i < j of a permutation set: (n * (n - 1) / 2,)."""
    d = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    i, j = torch.triu_indices(len(perms), len(perms), offset=1)
    return d[i, j]


def hamming_stats(perms: torch.Tensor) -> dict[str, float]:
    """Minimum and mean pairwise Hamming distance of a permutation set."""
    if len(perms) < 2:
        raise ValueError("Hamming statistics need at least two permutations")
    d = pairwise_hamming(perms).float()
    return {"min": d.min().item(), "mean": d.mean().item()}


def describe_permutation_set(perms: torch.Tensor, *, name: str = "permutation set") -> str:
    """One line on a permutation set: its size and the minimum, mean and maximum Hamming
    distance over all its pairs, with how many pairs sit at the minimum."""
    if len(perms) < 2:
        raise ValueError("Hamming statistics need at least two permutations")
    d = pairwise_hamming(perms)
    low = int(d.min())
    return (f"{name}: {len(perms)} orders, pairwise Hamming distance min {low} "
            f"({int((d == low).sum()):,} of {len(d):,} pairs), mean {d.float().mean():.2f}, "
            f"max {int(d.max())}")


def _check_set_size(n) -> None:
    if not isinstance(n, int) or not 2 <= n <= NUM_ORDERS:
        raise ValueError(f"the permutation set needs between 2 and 9! = {NUM_ORDERS} "
                         f"permutations, got {n!r}")


# --- tiles ----------------------------------------------------------------------------------

def effective_shift(channel_shift: int, gap: int) -> int:
    """The largest channel shift that keeps every channel of a tile inside its cell: a tile
    has ``gap`` pixels of room in its cell, so a shift of ``s`` either way needs ``2 s <= gap``
    (with a smaller gap the shift shrinks to ``gap // 2``; with no gap there is none)."""
    return min(channel_shift, gap // 2)


def sample_params(n: int, *, num_permutations: int, gap: int, channels: int,
                  gray_share: float = 0.3, channel_shift: int = 1, jitter: bool = True,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random choices for ``n`` puzzles: the permutation, where each tile sits inside its cell,
    a shift per colour channel and tile, and which images go grayscale.

    Every channel stays inside its cell: with ``s = effective_shift(channel_shift, gap)`` the
    tile's offset is drawn from s..gap-s in each direction and each channel's shift from -s..s,
    so offset + shift always lies in 0..gap, the same for every cell. With ``jitter`` off the
    tiles sit in the middle of their cells (offset gap // 2)."""
    s = effective_shift(channel_shift, gap)
    perm = torch.randint(num_permutations, (n,), generator=generator)
    if jitter:
        offset = torch.randint(gap - 2 * s + 1, (n, NUM_TILES, 2), generator=generator) + s
    else:
        offset = torch.full((n, NUM_TILES, 2), gap // 2)
    shift = torch.randint(-s, s + 1, (n, NUM_TILES, channels, 2), generator=generator)
    gray = torch.rand(n, generator=generator) < gray_share
    if channels == 1:  # nothing to guard: a single channel has no colour to shift or drop
        shift.zero_()
        gray.zero_()
    return {"perm": perm, "offset": offset, "shift": shift, "gray": gray}


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """Luma of each image repeated over its channels (unchanged for one channel)."""
    c = images.shape[1]
    if c == 1:
        return images
    w = torch.tensor(GRAY_WEIGHTS if c == 3 else [1 / c] * c, dtype=images.dtype,
                     device=images.device)
    return (images * w.view(1, c, 1, 1)).sum(1, keepdim=True).expand_as(images)


def grid_origin(height: int, width: int, *, tile_size: int, gap: int) -> tuple[int, int]:
    """Top-left pixel of the 3x3 grid of cells (side tile_size + gap), centred in the image."""
    side = GRID * (tile_size + gap)
    return (height - side) // 2, (width - side) // 2


def tile_corners(params: dict[str, torch.Tensor], *, height: int, width: int, tile_size: int,
                 gap: int) -> torch.Tensor:
    """Top-left pixel (row, col) of every tile and channel in grid order: (N, 9, C, 2), the
    cell's corner plus the tile's offset plus the channel's shift, never clipped: parameters
    that put a channel outside its cell are a ValueError."""
    cell = tile_size + gap
    top, left = grid_origin(height, width, tile_size=tile_size, gap=gap)
    k = torch.arange(NUM_TILES)
    cells = torch.stack([top + (k // GRID) * cell, left + (k % GRID) * cell], -1)  # (9, 2)
    inside = params["offset"][:, :, None, :] + params["shift"]  # (N, 9, C, 2), within the cell
    if len(inside) and (int(inside.min()) < 0 or int(inside.max()) > gap):
        raise ValueError(
            f"tile offsets plus channel shifts must lie in 0..gap = 0..{gap}, so that every "
            f"channel stays inside its cell; got {int(inside.min())}..{int(inside.max())}: draw "
            "the parameters with sample_params for this gap")
    return cells[None, :, None, :] + inside


def cut_tiles(images: torch.Tensor, corners: torch.Tensor, tile_size: int) -> torch.Tensor:
    """Gather the tiles at ``corners`` (N, 9, C, 2) from images (N, C, H, W): (N, 9, C, t, t).

    One ``torch.take`` for the whole batch (:func:`~ssl_teach.pretext.ops.cut_squares`): no
    loop over images, tiles or channels.
    """
    return cut_squares(images, corners, tile_size)


TILE_NORMS = ("channel", "tile")
"""How tiles are normalised: every channel of a tile on its own (the authors' released code),
or all channels of a tile together."""


def normalise_tiles(tiles: torch.Tensor, eps: float = 1e-2, *, per_channel: bool = True
                    ) -> torch.Tensor:
    """Every channel of every tile to mean 0 and std 1 (``per_channel=False``: every tile over
    its channels and pixels together): (..., C, t, t).

    eps: a flat tile (sky) stays flat, not amplified noise."""
    return normalise_each(tiles, dims=2 if per_channel else 3, eps=eps)


def shuffle(tiles: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """Put tile ``perms[n, i]`` of puzzle n at position i: (N, 9, ...) -> (N, 9, ...)."""
    idx = perms.long().to(tiles.device).view(*perms.shape, *([1] * (tiles.ndim - 2)))
    return tiles.gather(1, idx.expand_as(tiles))


def unshuffle(tiles: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`shuffle`: put the tile at position i back into cell perms[n, i]."""
    return shuffle(tiles, perms.argsort(dim=1))


def apply(images: torch.Tensor, params: dict[str, torch.Tensor], *, permutations: torch.Tensor,
          tile_size: int, gap: int, normalise: bool = True, per_channel: bool = True
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic part: grayscale where asked, cut, normalise and shuffle the tiles.

    Returns ``inputs`` (N, 9, C, t, t) and ``targets`` = ``params["perm"]`` (N,); with
    ``normalise=False`` the tiles keep their pixel values (for showing them); ``per_channel``
    as in :func:`normalise_tiles`.
    """
    check_images(images, min_size=GRID * (tile_size + gap))
    images = to_float(images)
    gray = params["gray"].to(images.device)
    if images.shape[1] > 1 and bool(gray.any()):
        images = torch.where(gray.view(-1, 1, 1, 1), to_grayscale(images), images)
    corners = tile_corners(params, height=images.shape[-2], width=images.shape[-1],
                           tile_size=tile_size, gap=gap)
    targets = params["perm"].to(images.device)
    # Shuffling the corners before cutting equals shuffling the tiles after (and is cheaper).
    corners = shuffle(corners, permutations[params["perm"]])
    tiles = cut_tiles(images, corners, tile_size)
    return (normalise_tiles(tiles, per_channel=per_channel) if normalise else tiles), targets


def check_images(images, *, min_size: int) -> None:
    """Raise a ValueError unless ``images`` is a batch (N, C, H, W) with H, W >= min_size."""
    check_batch(images)
    if min(images.shape[-2:]) < min_size:
        raise ValueError(
            f"images of {tuple(images.shape[-2:])} pixels are too small for a 3x3 grid of "
            f"tiles at these settings: they need at least {min_size}x{min_size}; use larger "
            "images or a smaller tile_size or gap")


# --- the context-free network ---------------------------------------------------------------

class ContextFreeNetwork(nn.Module):
    """Shared backbone on each tile alone -> pooled tile features concatenated in the given
    order -> MLP classifier over the permutation set. (N, 9, C, t, t) -> (N, num_classes)."""

    def __init__(self, backbone: Backbone, num_classes: int, *, hidden: int = 512,
                 dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(NUM_TILES * backbone.out_channels, hidden),
            nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        if tiles.ndim != 5 or tiles.shape[1] != NUM_TILES:
            raise ValueError(f"expected tiles (N, 9, C, t, t), got {tuple(tiles.shape)}")
        n = tiles.shape[0]
        x = tiles.flatten(0, 1)  # all 9N tiles through the backbone at once
        if not x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)  # faster convolutions on CPU
        feats = global_pool(self.backbone(x)[-1])  # (9N, D)
        return self.head(feats.reshape(n, -1))  # concatenated in the shuffled order


# --- whole images and tiles in the probe ----------------------------------------------------

def normalise_images(images: torch.Tensor, eps: float = 1e-2, *, per_channel: bool = True
                     ) -> torch.Tensor:
    """Each whole image (each of its channels, with ``per_channel``) to mean 0 and std 1, as
    every tile was in training."""
    return normalise_tiles(images, eps, per_channel=per_channel)


def grid_tiles(images: torch.Tensor, *, tile_size: int, gap: int, normalise: bool = True,
               per_channel: bool = True) -> torch.Tensor:
    """The nine tiles of each image in grid order, centred in their cells, no colour guards,
    normalised (``per_channel`` as in :func:`normalise_tiles`) unless asked not to:
    (N, 9, C, t, t)."""
    n, c = images.shape[:2]
    params = {"offset": torch.full((n, NUM_TILES, 2), gap // 2),
              "shift": torch.zeros(n, NUM_TILES, c, 2, dtype=torch.long)}
    corners = tile_corners(params, height=images.shape[-2], width=images.shape[-1],
                           tile_size=tile_size, gap=gap)
    tiles = cut_tiles(images, corners, tile_size)
    return normalise_tiles(tiles, per_channel=per_channel) if normalise else tiles


@torch.no_grad()
def tile_average_features(backbone: nn.Module, images: torch.Tensor, *, tile_size: int = 16,
                          gap: int = 5, device="auto", batch_size: int = 256,
                          per_channel: bool = True) -> dict[str, torch.Tensor]:
    """Probe features of whole images as the average over their nine tiles' features:
    {"block1": (N, D1), ...}, each tile normalised as in training (``per_channel``) and its
    map pooled like :func:`ssl_teach.probe.extract_features` pools a whole image's."""
    from ..probe import extract_features

    check_images(images, min_size=GRID * (tile_size + gap))
    out: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), batch_size):
        tiles = grid_tiles(to_float(images[i:i + batch_size]), tile_size=tile_size, gap=gap,
                           per_channel=per_channel)
        feats = extract_features(backbone, tiles.flatten(0, 1), device=device,
                                 batch_size=9 * batch_size)
        for block, f in feats.items():
            out.setdefault(block, []).append(f.view(-1, NUM_TILES, f.shape[-1]).mean(1))
    return {k: torch.cat(v) for k, v in out.items()}


def probe_tile_average(backbone: nn.Module, dataset, *, tile_size: int = 16, gap: int = 5,
                       device="auto", seed: int = 0, per_channel: bool = True):
    """The probe protocol with features averaged over the nine tiles of every image
    (:func:`tile_average_features`): a :class:`ssl_teach.probe.ProbeResult`."""
    from ..probe import probe_features

    kw = {"tile_size": tile_size, "gap": gap, "device": device, "per_channel": per_channel}
    train_f = tile_average_features(backbone, dataset.train_images, **kw)
    test_f = tile_average_features(backbone, dataset.test_images, **kw)
    return probe_features(train_f, dataset.train_labels, test_f, dataset.test_labels,
                          num_classes=dataset.num_classes, seed=seed)


# --- the task -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class JigsawTask(Task):
    """Jigsaw puzzles as a pretext task (see the module docstring)."""

    num_permutations: int = 100  # size of the permutation set (the classes)
    criterion: str = "average"  # how the set is chosen: "average" or "minimum" Hamming distance
    permutation_seed: int = 0
    tile_size: int = 16  # side of every tile in pixels (the backbone needs >= 16)
    gap: int = 5  # cells are tile_size + gap wide: tiles are at least `gap` apart if not jittered
    jitter: bool = True  # random tile position inside its cell (else centred)
    gray_share: float = 0.3  # share of images made grayscale (chromatic-aberration guard)
    channel_shift: int = 1  # max pixels each colour channel of a tile is shifted (same guard;
    # never more than gap // 2, so that every channel stays inside its cell)
    hidden: int = 512  # width of the classifier's hidden layer
    tile_norm: str = "channel"  # "channel": each channel of a tile on its own; "tile": together

    name = "jigsaw"
    samples_per_image = 1  # one puzzle per image

    def __post_init__(self):
        _check_set_size(self.num_permutations)
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if self.tile_size < 1 or self.gap < 0 or self.channel_shift < 0:
            raise ValueError("need tile_size >= 1, gap >= 0 and channel_shift >= 0, got "
                             f"{self.tile_size}, {self.gap}, {self.channel_shift}")
        if not 0 <= self.gray_share <= 1:
            raise ValueError(f"gray_share must be in [0, 1], got {self.gray_share}")
        if self.tile_norm not in TILE_NORMS:
            raise ValueError(f"tile_norm must be one of {TILE_NORMS}, got {self.tile_norm!r}")

    @property
    def per_channel(self) -> bool:
        """Whether every channel of a tile is normalised on its own."""
        return self.tile_norm == "channel"

    @property
    def num_classes(self) -> int:
        return self.num_permutations

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple("".join(map(str, p.tolist())) for p in self.permutations)

    @property
    def min_image_size(self) -> int:
        """Smallest square image side: three cells of tile_size + gap pixels."""
        return GRID * (self.tile_size + self.gap)

    @property
    def permutations(self) -> torch.Tensor:
        return permutation_set(self.num_permutations, criterion=self.criterion,
                               seed=self.permutation_seed)

    def describe_permutations(self) -> str:
        """One printable line on this task's permutation set and its Hamming distances."""
        return describe_permutation_set(
            self._perms(), name=f"greedy {self.criterion}-distance set (seed "
                                f"{self.permutation_seed})")

    def make_batch(self, images: torch.Tensor, *, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        check_images(images, min_size=self.min_image_size)
        params = sample_params(images.shape[0], num_permutations=self.num_permutations,
                               gap=self.gap, channels=images.shape[1],
                               gray_share=self.gray_share, channel_shift=self.channel_shift,
                               jitter=self.jitter, generator=generator)
        return apply(images, params, permutations=self._perms(), tile_size=self.tile_size,
                     gap=self.gap, per_channel=self.per_channel)

    def _perms(self) -> torch.Tensor:
        # Read from disk once per task object, not once per batch.
        key = "_perm_cache"
        if key not in self.__dict__:
            object.__setattr__(self, key, self.permutations)
        return self.__dict__[key]

    def build_model(self, backbone: Backbone) -> nn.Module:
        return ContextFreeNetwork(backbone, self.num_classes, hidden=self.hidden)

    def probe_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """How the tile-trained backbone sees a whole image in the probe: the whole image at
        once, normalised by its own mean and std (per channel, with ``tile_norm="channel"``)
        as every tile was (see also :func:`probe_tile_average`, which averages the features
        of the nine tiles)."""
        return normalise_images(images, per_channel=self.per_channel)
