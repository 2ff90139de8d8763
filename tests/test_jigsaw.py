"""Jigsaw task: permutation set, tile cutter, shuffling, the context-free network, errors."""

import itertools
import math

import pytest
import torch

from ssl_teach.models import build_backbone
from ssl_teach.pretext import get_task
from ssl_teach.pretext.jigsaw import (
    NUM_ORDERS, ContextFreeNetwork, JigsawTask, all_permutations, apply, cut_tiles,
    describe_permutation_set, effective_shift, grid_origin, grid_tiles, hamming_stats,
    normalise_tiles, pairwise_hamming, permutation_set, random_permutation_set, sample_params,
    select_permutations, shuffle, tile_average_features, tile_corners, to_grayscale, unshuffle,
)

SMALL = {"tile_size": 8, "gap": 2}  # 30x30 grid: fits the 32x32 test images


def hamming_loop(a, b):
    """Reference: count the positions where two orders differ, one at a time."""
    return sum(int(x) != int(y) for x, y in zip(a, b))


def cut_loop(images, params, *, tile_size, gap, permutation):
    """Reference tile cutter written straight from the description, one tile and channel at a
    time: cell (r, c) starts at origin + (r, c) * (tile + gap); the tile sits at the cell's
    offset, each channel moved by its own shift and still inside its cell; grayscale first;
    every channel of every tile normalised on its own."""
    n, ch, h, w = images.shape
    cell = tile_size + gap
    top0, left0 = (h - 3 * cell) // 2, (w - 3 * cell) // 2
    out = torch.empty(n, 9, ch, tile_size, tile_size)
    for i in range(n):
        img = images[i]
        if params["gray"][i]:
            luma = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
            img = luma.expand(ch, h, w)
        p = permutation[params["perm"][i]]
        for pos in range(9):
            k = int(p[pos])  # position pos shows the tile of cell k
            for c in range(ch):
                dy = int(params["offset"][i, k, 0]) + int(params["shift"][i, k, c, 0])
                dx = int(params["offset"][i, k, 1]) + int(params["shift"][i, k, c, 1])
                assert 0 <= dy <= gap and 0 <= dx <= gap  # inside the cell
                top, left = top0 + (k // 3) * cell + dy, left0 + (k % 3) * cell + dx
                channel = img[c, top:top + tile_size, left:left + tile_size]
                out[i, pos, c] = (channel - channel.mean()) / (channel.std() + 1e-2)
    return out


def test_all_orders_are_the_distinct_permutations_of_nine():
    perms = all_permutations()
    assert perms.shape == (NUM_ORDERS, 9) == (math.factorial(9), 9)
    assert perms.dtype == torch.uint8
    assert torch.equal(perms.sort(1).values, torch.arange(9, dtype=torch.uint8).expand(
        NUM_ORDERS, 9))
    assert len(torch.unique(perms, dim=0)) == NUM_ORDERS


@pytest.mark.parametrize("criterion", ["average", "minimum"])
def test_permutation_set_is_valid_and_reproducible(criterion):
    a = select_permutations(30, criterion=criterion, seed=4)
    assert a.shape == (30, 9)
    assert all(sorted(p.tolist()) == list(range(9)) for p in a)
    assert len(torch.unique(a, dim=0)) == 30  # no duplicates
    assert torch.equal(a, select_permutations(30, criterion=criterion, seed=4))
    assert not torch.equal(a, select_permutations(30, criterion=criterion, seed=5))


def test_reported_hamming_distances_match_the_pairwise_loop():
    perms = select_permutations(20, seed=1)
    loop = [hamming_loop(perms[i], perms[j]) for i, j in itertools.combinations(range(20), 2)]
    assert pairwise_hamming(perms).tolist() == loop
    stats = hamming_stats(perms)
    assert stats["min"] == min(loop)
    assert stats["mean"] == pytest.approx(sum(loop) / len(loop))


def test_greedy_sets_are_far_apart():
    # The greedy minimum criterion keeps every pair far apart, further than random picks;
    # the average criterion raises the mean, as the paper's set (mean about 8).
    by_min, by_avg = select_permutations(100, criterion="minimum"), select_permutations(100)
    rand = random_permutation_set(100)
    assert hamming_stats(by_min)["min"] >= 6 > hamming_stats(rand)["min"]
    assert hamming_stats(by_avg)["mean"] > hamming_stats(rand)["mean"]
    assert hamming_stats(by_avg)["min"] >= 2


def test_permutation_set_is_cached_on_disk(private_cache):
    a = permutation_set(24, seed=2)
    files = list((private_cache / "jigsaw").glob("*.pt"))
    assert len(files) == 1
    assert torch.equal(a, permutation_set(24, seed=2))
    files[0].write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        assert torch.equal(permutation_set(24, seed=2), a)


def test_set_size_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="9! = 362880"):
        select_permutations(NUM_ORDERS + 1)
    with pytest.raises(ValueError, match="between 2"):
        JigsawTask(num_permutations=1)
    with pytest.raises(ValueError, match="criterion"):
        JigsawTask(criterion="median")


def test_shuffle_then_inverse_rebuilds_the_tiles():
    tiles = torch.rand(5, 9, 3, 4, 4)
    perms = select_permutations(10)[torch.tensor([0, 3, 9, 3, 1])]
    shuffled = shuffle(tiles, perms)
    for i in range(5):
        for pos in range(9):
            assert torch.equal(shuffled[i, pos], tiles[i, int(perms[i, pos])])
    assert torch.equal(unshuffle(shuffled, perms), tiles)


def test_cutter_matches_the_per_tile_loop():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 33, 31, generator=g)  # odd, non-square sizes on purpose
    perms = select_permutations(10)
    params = sample_params(4, num_permutations=10, gap=2, channels=3, gray_share=0.5,
                           channel_shift=2, generator=g)
    params["gray"] = torch.tensor([True, False, True, False])
    inputs, targets = apply(images, params, permutations=perms, **SMALL)
    assert inputs.shape == (4, 9, 3, 8, 8) and torch.equal(targets, params["perm"])
    ref = cut_loop(images, params, permutation=perms, **SMALL)
    assert torch.allclose(inputs, ref, atol=1e-5)


def test_every_channel_shift_stays_inside_its_cell():
    # 20,000 puzzles at the default settings on 64 px images, where the grid of 63 px touches
    # the top and left borders: no shift may be cut short there (or anywhere)
    task = JigsawTask()
    params = sample_params(20_000, num_permutations=task.num_permutations, gap=task.gap,
                           channels=3, channel_shift=task.channel_shift,
                           generator=torch.Generator().manual_seed(0))
    corners = tile_corners(params, height=64, width=64, tile_size=task.tile_size, gap=task.gap)
    top, left = grid_origin(64, 64, tile_size=task.tile_size, gap=task.gap)
    k = torch.arange(9)
    cells = torch.stack([top + (k // 3) * (task.tile_size + task.gap),
                         left + (k % 3) * (task.tile_size + task.gap)], -1)
    inside = corners - cells[None, :, None, :]  # (N, 9, C, 2): position within the cell
    assert inside.min() >= 0 and inside.max() <= task.gap
    # every shift is applied in full: the channel sits exactly at offset + shift
    assert torch.equal(inside, params["offset"][:, :, None, :] + params["shift"])
    assert params["shift"].abs().max() == task.channel_shift
    # so the channel shifts of a top-left tile look like those of a bottom-right one
    for cell in (0, 2, 6):
        share = (params["shift"][:, cell] == 0).float().mean()
        assert abs(share - (params["shift"][:, 8] == 0).float().mean()) < 0.01, cell


def test_channel_shift_shrinks_to_fit_a_small_gap_and_bad_params_are_refused():
    assert [effective_shift(2, gap) for gap in (0, 1, 2, 3, 4, 5)] == [0, 0, 1, 1, 2, 2]
    params = sample_params(500, num_permutations=10, gap=2, channels=3, channel_shift=3,
                           generator=torch.Generator().manual_seed(1))
    inside = params["offset"][:, :, None, :] + params["shift"]
    assert params["shift"].abs().max() == 1 and inside.min() >= 0 and inside.max() <= 2
    params["shift"][0, 0, 0, 0] = -2  # a channel pushed out of its cell
    with pytest.raises(ValueError, match="inside its cell"):
        tile_corners(params, height=32, width=32, tile_size=8, gap=2)


def test_every_channel_of_every_tile_is_normalised_on_its_own(images):
    # colour casts differ per channel: per-channel normalisation removes them, as in the
    # authors' released code; tile_norm="tile" normalises the channels of a tile together
    tinted = images * torch.tensor([1.0, 0.5, 0.2]).view(1, 3, 1, 1) + 0.1
    task = JigsawTask(gray_share=0.0, **SMALL)
    g = torch.Generator().manual_seed(0)
    inputs, _ = task.make_batch(tinted, generator=g)
    assert torch.allclose(inputs.mean((-2, -1)), torch.zeros(6, 9, 3), atol=1e-5)
    params = sample_params(6, num_permutations=100, gap=SMALL["gap"], channels=3,
                           gray_share=0.0, generator=torch.Generator().manual_seed(0))
    raw, _ = apply(tinted, params, permutations=task.permutations, normalise=False, **SMALL)
    std = raw.std((-2, -1))  # each channel divided by its own std (+ eps for flat tiles)
    assert torch.allclose(inputs.std((-2, -1)), std / (std + 1e-2), atol=1e-4)
    joint, _ = JigsawTask(tile_norm="tile", **SMALL).make_batch(
        tinted, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(joint.mean((-3, -2, -1)), torch.zeros(6, 9), atol=1e-5)
    assert joint.mean((-2, -1)).abs().max() > 0.5  # the channels keep their differences
    whole = JigsawTask(**SMALL).probe_inputs(tinted)
    assert torch.allclose(whole.mean((-2, -1)), torch.zeros(6, 3), atol=1e-5)
    with pytest.raises(ValueError, match="tile_norm"):
        JigsawTask(tile_norm="image")


def test_the_papers_1000_permutation_set_and_its_distances_are_printed(capsys):
    # the paper's Table 1: 1000 orders chosen for maximal average distance, mean about 8
    task = JigsawTask(num_permutations=1000)
    perms = task.permutations
    assert perms.shape == (1000, 9) and len(torch.unique(perms, dim=0)) == 1000
    stats = hamming_stats(perms)
    assert stats["min"] >= 2 and stats["mean"] >= 7.95
    print(task.describe_permutations())
    line = capsys.readouterr().out
    assert "1000 orders" in line and f"min {stats['min']:.0f}" in line
    assert f"mean {stats['mean']:.2f}" in line
    d = pairwise_hamming(perms)
    assert f"({int((d == d.min()).sum()):,} of {len(d):,} pairs)" in line
    assert task.num_classes == 1000 and len(task.class_names) == 1000
    assert describe_permutation_set(perms[:2]).startswith("permutation set: 2 orders")


def test_tiles_put_back_rebuild_the_image_without_gap_or_guards():
    images = torch.rand(3, 3, 24, 24)
    perms = select_permutations(10)
    params = sample_params(3, num_permutations=10, gap=0, channels=3, gray_share=0.0,
                           channel_shift=0, generator=torch.Generator().manual_seed(1))
    corners = tile_corners(params, height=24, width=24, tile_size=8, gap=0)
    tiles = cut_tiles(images, shuffle(corners, perms[params["perm"]]), 8)
    back = unshuffle(tiles, perms[params["perm"]])  # (N, 9, C, 8, 8) in grid order
    rebuilt = back.view(3, 3, 3, 3, 8, 8).permute(0, 3, 1, 4, 2, 5).reshape(3, 3, 24, 24)
    assert torch.equal(rebuilt, images)


def test_each_tile_is_normalised_on_its_own():
    raw = torch.rand(2, 9, 3, 8, 8) * 5 + 3
    tiles = normalise_tiles(raw)  # every channel on its own
    assert torch.allclose(tiles.mean(dim=(-2, -1)), torch.zeros(2, 9, 3), atol=1e-5)
    assert torch.allclose(tiles.std(dim=(-2, -1)), torch.ones(2, 9, 3), atol=1e-2)
    joint = normalise_tiles(raw, per_channel=False)  # the channels of a tile together
    assert torch.allclose(joint.mean(dim=(-3, -2, -1)), torch.zeros(2, 9), atol=1e-5)
    assert torch.allclose(joint.std(dim=(-3, -2, -1)), torch.ones(2, 9), atol=1e-2)


def test_without_jitter_tiles_sit_in_the_middle_of_their_cells():
    params = sample_params(2, num_permutations=10, gap=4, channels=3, jitter=False,
                           channel_shift=0, generator=torch.Generator().manual_seed(0))
    assert (params["offset"] == 2).all() and not params["shift"].any()


def test_grayscale_images_have_no_colour_guards():
    params = sample_params(64, num_permutations=10, gap=2, channels=1, gray_share=1.0,
                           channel_shift=2, generator=torch.Generator().manual_seed(0))
    assert not params["gray"].any() and not params["shift"].any()
    img = torch.rand(2, 1, 8, 8)
    assert torch.equal(to_grayscale(img), img)
    task = JigsawTask(**SMALL)
    inputs, targets = task.make_batch(torch.rand(6, 1, 32, 32),
                                      generator=torch.Generator().manual_seed(0))
    assert inputs.shape == (6, 9, 1, 8, 8) and targets.shape == (6,)
    model = task.build_model(build_backbone(in_channels=1, width=4, depth=2))
    assert model(inputs).shape == (6, 100)


def test_params_are_drawn_from_the_generator_only():
    kw = {"num_permutations": 10, "gap": 2, "channels": 3}
    a = sample_params(5, generator=torch.Generator().manual_seed(3), **kw)
    torch.manual_seed(99)  # the global state must not matter
    b = sample_params(5, generator=torch.Generator().manual_seed(3), **kw)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_task_batch_model_and_contract(images):
    task = get_task("jigsaw", **SMALL)
    assert task.min_image_size == 30 and task.chance == 0.01 and task.num_classes == 100
    assert len(task.class_names) == 100 and task.samples_per_image == 1
    inputs, targets = task.make_batch(images, generator=torch.Generator().manual_seed(0))
    assert inputs.shape == (6, 9, 3, 8, 8) and targets.shape == (6,)
    assert targets.max() < 100
    model = task.build_model(build_backbone(width=4, depth=2))
    assert isinstance(model, ContextFreeNetwork)
    assert model(inputs).shape == (6, 100)
    assert torch.equal(model.backbone.blocks[0][0].weight,
                       task.build_model(model.backbone).backbone.blocks[0][0].weight)
    whole = task.probe_inputs(images)
    assert whole.shape == images.shape
    assert torch.allclose(whole.mean(dim=(2, 3)), torch.zeros(6, 3), atol=1e-5)


def test_network_reads_tiles_in_the_given_order():
    torch.manual_seed(0)  # only to make a fixed model for this check
    model = ContextFreeNetwork(build_backbone(width=4, depth=2), 10).eval()
    tiles = torch.randn(2, 9, 3, 8, 8)
    swapped = tiles[:, [1, 0, 2, 3, 4, 5, 6, 7, 8]]
    assert not torch.allclose(model(tiles), model(swapped))  # order matters to the head


def test_too_small_or_badly_shaped_images_are_clear_errors():
    task = JigsawTask()  # 16-pixel tiles, gap 5: needs 63 pixels
    assert task.min_image_size == 63
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="at least 63x63"):
        task.make_batch(torch.rand(2, 3, 62, 64), generator=g)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        task.make_batch(torch.rand(3, 64, 64), generator=g)
    task.make_batch(torch.rand(2, 3, 63, 63), generator=g)  # exactly the minimum works


def test_tile_average_features_average_the_grid_tiles():
    images = torch.rand(4, 3, 32, 32)
    backbone = build_backbone(width=4, depth=2)
    feats = tile_average_features(backbone, images, device="cpu", **SMALL)
    tiles = grid_tiles(images, **SMALL)
    from ssl_teach.probe import extract_features
    per_tile = extract_features(backbone, tiles.flatten(0, 1), device="cpu")
    for block, f in feats.items():
        assert f.shape[0] == 4
        assert torch.allclose(f, per_tile[block].view(4, 9, -1).mean(1), atol=1e-5)
