"""Relative patch location: labels, pair cutting, colour countermeasures, the siamese network."""

import pytest
import torch

from ssl_teach.models import build_backbone
from ssl_teach.pretext import get_task
from ssl_teach.pretext.relative_patch import (
    CLASS_NAMES, GREEN_MAGENTA, OFFSETS, AbsolutePositionTask, LateFusion, RelativePatchTask,
    chromatic_aberration, drop_colours, embed_patches, grid_extent, grid_patches, label_of,
    make_pairs, normalise_patches, offset_of, pair_corners, patch_average_features,
    patch_features, position_accuracy, project_out_green_magenta, sample_colour_drop,
    sample_params,
)

GEOMETRY = {"patch": 6, "gap": 3, "jitter": 1}  # small enough for 32x32 loop references


def corner_loop(label, origin, jit, *, patch, gap, jitter):
    """Reference from the definition: the grid starts ``jitter`` px inside the shifted origin,
    cells are ``patch + gap`` apart, the centre cell is (1, 1) and label k's neighbour sits at
    (1, 1) + OFFSETS[k]; every patch then moves by its own jitter."""
    dr, dc = OFFSETS[label]
    step = patch + gap
    centre = (origin[0] + jitter + step + jit[0][0], origin[1] + jitter + step + jit[0][1])
    neighbour = (origin[0] + jitter + (1 + dr) * step + jit[1][0],
                 origin[1] + jitter + (1 + dc) * step + jit[1][1])
    return centre, neighbour


def test_labels_run_row_major_over_the_grid_skipping_the_centre():
    cells = [(r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1)]
    assert [(1 + dr, 1 + dc) for dr, dc in OFFSETS] == cells
    assert len(CLASS_NAMES) == 8 and CLASS_NAMES[0] == "top-left" and CLASS_NAMES[4] == "right"


def test_every_label_maps_to_its_offset_and_back():
    for label in range(8):
        dr, dc = offset_of(label)
        assert (dr, dc) != (0, 0) and max(abs(dr), abs(dc)) == 1
        assert label_of(dr, dc) == label
    with pytest.raises(ValueError, match="0..7"):
        offset_of(8)
    with pytest.raises(ValueError, match="not one of the 8 neighbours"):
        label_of(0, 0)


def test_pairs_are_cut_where_the_label_says(images):
    params = sample_params(len(images), image_size=32, generator=torch.Generator().manual_seed(1),
                           **GEOMETRY)
    inputs, targets = make_pairs(images, params, **GEOMETRY)
    p = GEOMETRY["patch"]
    assert inputs.shape == (6, 2, 3, p, p) and torch.equal(targets, params["label"])
    for i in range(len(images)):
        corners = corner_loop(int(params["label"][i]), params["origin"][i].tolist(),
                              params["jitter"][i].tolist(), **GEOMETRY)
        for k, (top, left) in enumerate(corners):
            assert torch.equal(inputs[i, k], images[i, :, top:top + p, left:left + p])


def test_every_label_and_jitter_stays_inside_the_image():
    size = grid_extent(**GEOMETRY)  # the tightest image that holds the grid
    imgs = torch.rand(400, 1, size, size, generator=torch.Generator().manual_seed(0))
    params = sample_params(400, image_size=size, generator=torch.Generator().manual_seed(2),
                           **GEOMETRY)
    assert set(params["label"].tolist()) == set(range(8))
    assert params["jitter"].abs().max() == GEOMETRY["jitter"]
    inputs, _ = make_pairs(imgs, params, **GEOMETRY)  # an index out of range would raise
    assert inputs.shape == (400, 2, 1, 6, 6)


def pixels_between(corners, patch):
    """Reference: the number of pixel rows or columns that separate two squares of side
    ``patch`` at top-left corners a and b, along the axis where they are furthest apart
    (0: they touch or overlap), one pair at a time."""
    out = []
    for (ar, ac), (br, bc) in corners.tolist():
        out.append(max(abs(ar - br), abs(ac - bc)) - patch)
    return torch.tensor(out)


@pytest.mark.parametrize("geometry", [{}, {"patch": 16, "gap": 3, "jitter": 1},
                                      {"patch": 20, "gap": 5, "jitter": 2}])
def test_the_two_patches_of_a_pair_never_touch(geometry):
    # 200,000 pairs: two jitters towards each other close the gap by up to 2 * jitter, and
    # gap > 2 * jitter (checked when the task is made) leaves at least one pixel between them
    task = RelativePatchTask(**geometry)
    kw = {"patch": task.patch, "gap": task.gap, "jitter": task.jitter}
    params = sample_params(200_000, image_size=task.min_image_size + 5,
                           generator=torch.Generator().manual_seed(0), **kw)
    corners = pair_corners(params, **kw)  # (n, 2 patches, 2 coordinates)
    apart = (corners[:, 0] - corners[:, 1]).abs().amax(1) - task.patch  # pixels between them
    assert apart.min() >= 1, f"{int((apart < 1).sum())} of 200,000 pairs touch or overlap"
    assert apart.min() == task.gap - 2 * task.jitter  # the closest pairs are as predicted
    assert torch.equal(apart[:500], pixels_between(corners[:500], task.patch))


@pytest.mark.parametrize("gap, jitter", [(4, 3), (6, 3), (0, 0), (2, 1)])
def test_a_gap_that_jitter_can_close_is_a_clear_error(gap, jitter):
    with pytest.raises(ValueError, match=rf"gap={gap} must be larger than 2 \* jitter"):
        RelativePatchTask(gap=gap, jitter=jitter)
    with pytest.raises(ValueError, match="touch or overlap"):
        AbsolutePositionTask(gap=gap, jitter=jitter)
    with pytest.raises(ValueError, match="larger gap"):
        sample_params(2, image_size=96, patch=16, gap=gap, jitter=jitter,
                      generator=torch.Generator().manual_seed(0))


def test_default_grid_keeps_the_papers_proportions_on_64_pixel_images():
    # the paper: 96 px patches, a 48 px gap (half a patch), up to 7 px of jitter
    task = RelativePatchTask()
    assert task.min_image_size <= 64
    assert abs(task.gap / task.patch - 48 / 96) <= 0.1
    assert abs(task.jitter / task.patch - 7 / 96) <= 0.02
    assert task.gap > 2 * task.jitter


def test_colour_dropping_and_projection_are_options_off_by_default():
    task = RelativePatchTask()
    assert task.colour_drop is False and task.projection is False
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    dropped, _ = RelativePatchTask(colour_drop=True, normalise=False).make_batch(images,
                                                                              generator=g)
    # every patch keeps one channel; the other two are flat up to faint noise
    stds = dropped.std((-2, -1))  # (N, 2, C)
    assert ((stds < 0.02 * stds.amax(-1, keepdim=True)).sum(-1) == 2).all()
    projected, _ = RelativePatchTask(projection=True, normalise=False).make_batch(
        images, generator=torch.Generator().manual_seed(1))
    v = torch.tensor(GREEN_MAGENTA) / torch.tensor(GREEN_MAGENTA).norm()
    assert torch.einsum("npchw,c->nphw", projected, v).abs().max() < 1e-5


def test_grid_patches_match_slicing():
    imgs = torch.rand(2, 3, 25, 25, generator=torch.Generator().manual_seed(0))
    patches = grid_patches(imgs, patch=6, gap=2)  # grid of 22 px, centred: starts at row 1
    for r in range(3):
        for c in range(3):
            top, left = 1 + r * 8, 1 + c * 8
            assert torch.equal(patches[:, 3 * r + c], imgs[:, :, top:top + 6, left:left + 6])


def test_params_come_from_the_generator_only():
    a = sample_params(8, image_size=64, patch=16, gap=7, jitter=1,
                      generator=torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # the global state must not matter
    b = sample_params(8, image_size=64, patch=16, gap=7, jitter=1,
                      generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_colour_dropping_keeps_exactly_one_informative_channel():
    patches = torch.rand(5, 2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    params = sample_colour_drop(patches.shape, generator=torch.Generator().manual_seed(1))
    dropped = drop_colours(patches, params)
    for i in range(5):
        for j in range(2):
            keep = int(params["keep"][i, j])
            for c in range(3):
                if c == keep:
                    assert torch.equal(dropped[i, j, c], patches[i, j, c])
                else:  # flat at the kept channel's mean, up to noise of 1/100 of its std
                    kept = patches[i, j, keep]
                    assert torch.allclose(dropped[i, j, c].mean(), kept.mean(), atol=0.01)
                    assert dropped[i, j, c].std() < 0.02 * kept.std()


def test_colour_dropping_and_projection_are_no_ops_on_grayscale():
    gray = torch.rand(4, 1, 8, 8)
    params = sample_colour_drop(gray.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(drop_colours(gray, params), gray)
    assert torch.equal(project_out_green_magenta(gray), gray)
    assert torch.equal(chromatic_aberration(gray, strength=0.1), gray)


def test_projection_removes_the_green_magenta_component():
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    v = torch.tensor(GREEN_MAGENTA) / torch.tensor(GREEN_MAGENTA).norm()
    before = torch.einsum("nchw,c->nhw", images, v)
    assert before.abs().max() > 0.1  # there was something to remove
    projected = project_out_green_magenta(images)
    after = torch.einsum("nchw,c->nhw", projected, v)
    assert after.abs().max() < 1e-6
    # the two other colour directions (brightness, red-blue) are untouched
    for axis in (torch.tensor([1.0, 1.0, 1.0]), torch.tensor([1.0, 0.0, -1.0])):
        assert torch.allclose(torch.einsum("nchw,c->nhw", projected, axis),
                              torch.einsum("nchw,c->nhw", images, axis), atol=1e-6)
    assert torch.allclose(project_out_green_magenta(projected), projected, atol=1e-6)


def test_chromatic_aberration_shifts_green_more_far_from_the_centre():
    # Vertical stripes, the same in every channel: any colour difference is the aberration.
    x = torch.arange(64.0)
    stripes = (torch.sin(x / 2) * 0.5 + 0.5).expand(1, 3, 64, 64).clone()
    out = chromatic_aberration(stripes, strength=0.06)
    assert torch.equal(out[:, 0], stripes[:, 0]) and torch.equal(out[:, 2], stripes[:, 2])
    fringe = (out[0, 1] - out[0, 0]).abs().mean(0)  # per column
    centre, edge = fringe[28:36].mean(), torch.cat([fringe[:8], fringe[-8:]]).mean()
    assert centre < 0.05 and edge > 4 * centre
    # green moves towards the centre: at the right edge it shows what red shows further out
    g, r = out[0, 1, 32], stripes[0, 0, 32]
    shift = min(range(4), key=lambda s: (g[52:60] - r[52 + s:60 + s]).abs().sum().item())
    assert shift >= 1


def test_per_patch_normalisation():
    patches = torch.rand(3, 2, 3, 8, 8) * 5 + 2
    out = normalise_patches(patches)
    assert torch.allclose(out.mean((-3, -2, -1)), torch.zeros(3, 2), atol=1e-5)
    assert torch.allclose(out.std((-3, -2, -1)), torch.ones(3, 2), atol=1e-2)


def test_task_batch_shapes_and_model():
    task = get_task("relative_patch")
    assert task.chance == 0.125 and task.num_classes == 8 and task.min_image_size == 64
    images = torch.rand(10, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    inputs, targets = task.make_batch(images, generator=torch.Generator().manual_seed(0))
    assert inputs.shape == (10, 2, 3, 16, 16) and targets.shape == (10,)
    assert targets.dtype == torch.int64 and 0 <= targets.min() and targets.max() < 8
    model = task.build_model(build_backbone(width=8))
    assert isinstance(model, LateFusion) and model(inputs).shape == (10, 8)


def test_late_fusion_looks_at_each_patch_alone():
    model = LateFusion(build_backbone(width=8), num_classes=8).eval()
    pairs = torch.rand(4, 2, 3, 16, 16)
    other = pairs.clone()
    other[:, 1] = torch.rand(4, 3, 16, 16)  # new neighbours, same centres
    with torch.no_grad():
        a = embed_patches(model.backbone, pairs[:, 0])
        b = embed_patches(model.backbone, other[:, 0])
        assert torch.equal(a, b)
        assert not torch.allclose(model(pairs), model(other))


def test_make_batch_is_deterministic_given_the_generator():
    task = get_task("relative_patch", colour_drop=True, aberration=0.05)
    images = torch.rand(6, 3, 64, 64)
    a = task.make_batch(images, generator=torch.Generator().manual_seed(3))
    b = task.make_batch(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("options", [{}, {"colour_drop": True}, {"projection": True},
                                     {"aberration": 0.05, "normalise": False}])
def test_grayscale_images_work_with_every_option(options):
    task = get_task("relative_patch", **options)
    gray = torch.rand(5, 1, 64, 64)
    inputs, targets = task.make_batch(gray, generator=torch.Generator().manual_seed(0))
    assert inputs.shape == (5, 2, 1, 16, 16)
    model = task.build_model(build_backbone(in_channels=1, width=8))
    assert model(inputs).shape == (5, 8)
    assert task.probe_inputs(gray).shape == gray.shape


def test_probe_inputs_are_whole_images():
    images = torch.rand(3, 3, 64, 64)
    for options in ({}, {"projection": True}, {"colour_drop": True}):
        out = get_task("relative_patch", **options).probe_inputs(images)
        assert out.shape == images.shape
        assert torch.allclose(out.mean((1, 2, 3)), torch.zeros(3), atol=1e-5)


def test_absolute_position_patches_come_from_their_cell():
    task = AbsolutePositionTask(patch=16, gap=4, jitter=0, normalise=False)
    images = torch.rand(20, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    inputs, cells = task.make_batch(images, generator=torch.Generator().manual_seed(1))
    assert inputs.shape == (20, 1, 3, 16, 16) and cells.max() < 9
    # without jitter the 56 px grid still shifts by up to 8 px inside 64: search those shifts
    for i in range(20):
        r, c = divmod(int(cells[i]), 3)
        found = [(dy, dx) for dy in range(9) for dx in range(9)
                 if torch.equal(inputs[i, 0], images[i, :, dy + 20 * r:dy + 20 * r + 16,
                                                     dx + 20 * c:dx + 20 * c + 16])]
        assert found, i


def test_bad_input_is_a_clear_error():
    task = get_task("relative_patch")
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="too small.*64x64"):
        task.make_batch(torch.rand(2, 3, 63, 64), generator=g)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        task.make_batch(torch.rand(3, 64, 64), generator=g)
    with pytest.raises(ValueError, match="patch must be at least 16"):
        get_task("relative_patch", patch=8)
    with pytest.raises(ValueError, match="gap and jitter must be >= 0"):
        get_task("relative_patch", gap=-1)
    with pytest.raises(ValueError, match="cannot hold the grid"):
        sample_params(2, image_size=40, patch=16, gap=7, jitter=1, generator=g)
    with pytest.raises(ValueError, match="aberration"):
        get_task("relative_patch", aberration=0.7)
    with pytest.raises(ValueError, match="patch tuples"):
        LateFusion(build_backbone(width=8), num_classes=8)(torch.rand(2, 3, 16, 16))


def test_position_accuracy_counts_cell_row_and_column():
    cells = torch.tensor([0, 4, 8, 5])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 3, 2, 5]), 9).float()
    acc = position_accuracy(logits, cells)
    # cells 0 and 5 are right; 3 for 4 has the right row, 2 for 8 the right column
    assert acc == {"cell": 0.5, "row": 0.75, "column": 0.75}


def test_patch_average_features_average_the_nine_grid_patches():
    task = get_task("relative_patch")
    backbone = build_backbone(width=4).eval()
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    avg = patch_average_features(backbone, task, images)
    grid = grid_patches(images, patch=task.patch, gap=task.gap)
    per_patch = patch_features(backbone, task, grid.flatten(0, 1))
    for b, name in enumerate(["block1", "block2", "block3", "block4"]):
        assert avg[name].shape == (3, per_patch[b].shape[1])
        assert torch.allclose(avg[name], per_patch[b].view(3, 9, -1).mean(1), atol=1e-6)
    assert not backbone.training


def test_vignetting_darkens_towards_the_corners_only():
    from ssl_teach.pretext.relative_patch import vignetting

    flat = torch.full((2, 3, 32, 32), 200, dtype=torch.uint8)
    out = vignetting(flat, strength=0.3)
    assert out.dtype == torch.uint8 and out.shape == flat.shape
    assert (out[..., 15:17, 15:17].float() - 200).abs().max() <= 1  # the centre keeps its value
    corner = out[0, 0, 0, 0].item()
    r2 = (1 - 1 / 32) ** 2  # the corner pixel's centre sits half a pixel inside the corner
    assert abs(corner - 200 * (1 - 0.3 * r2)) <= 1
    assert out[0, 0, 0, 16] > corner and out[0, 0, 16, 0] > corner  # edges: halfway
    as_float = vignetting(flat.float() / 255, strength=0.3)
    assert as_float.dtype == torch.float32
    assert torch.allclose(as_float * 255, out.float(), atol=0.51)
    assert torch.equal(vignetting(flat, strength=0), flat)
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
        vignetting(flat, strength=1.5)


def test_the_mystery_datasets_hide_one_position_cue_and_one_uniform_cast():
    import dataclasses

    from ssl_teach import exercises
    from ssl_teach.data import load_dataset

    data = load_dataset("scenes", size=32, n_unlabeled=8, n_train=10, n_test=10, cache=False)
    from ssl_teach.pretext.relative_patch import vignetting

    cast = torch.tensor(exercises.MYSTERY_CAST).view(1, 3, 1, 1)
    for seed in (0, 1, 2, 3):
        planted = exercises._planted(seed)
        mysteries = exercises.mystery_datasets(data, seed=seed)
        assert set(mysteries) == {"A", "B"}
        for name, mystery in mysteries.items():
            assert torch.equal(mystery.train_labels, data.train_labels)
            for split in ("unlabeled", "train_images", "test_images"):
                images = getattr(data, split)
                expected = (vignetting(images, strength=exercises.MYSTERY_VIGNETTING)
                            if name == planted else
                            (images.float() * cast).round().clamp(0, 255).to(torch.uint8))
                assert torch.equal(getattr(mystery, split), expected), (seed, name, split)
    # the planted change darkens the corners; the cast is the same factor everywhere
    ratio = vignetting(torch.full((1, 3, 32, 32), 250, dtype=torch.uint8),
                       strength=exercises.MYSTERY_VIGNETTING).float() / 250
    assert ratio[..., 0, 0].max() < ratio[..., 15:17, 15:17].min() - 0.05
    assert {exercises._planted(s) for s in range(6)} == {"A", "B"}
    assert exercises.check_planted_cue(lambda: exercises._planted(5), 5)
    wrong = "B" if exercises._planted(5) == "A" else "A"
    with pytest.raises(exercises.ExerciseError, match="planted cue.*\nHint: train the "
                                                      "absolute-position network"):
        exercises.check_planted_cue(lambda: wrong, 5)
    with pytest.raises(exercises.ExerciseError, match='return "A" or "B"'):
        exercises.check_planted_cue(lambda: "both", 5)
    gray = dataclasses.replace(data, unlabeled=data.unlabeled[:, :1],
                               train_images=data.train_images[:, :1],
                               test_images=data.test_images[:, :1])
    with pytest.raises(ValueError, match="need colour images"):
        exercises.mystery_datasets(gray, seed=1 if exercises._planted(1) == "B" else 0)
