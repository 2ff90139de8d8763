"""The shared batched operations of the pretext tasks, against plain loops."""

import pytest
import torch

from ssl_teach.pretext.ops import cut_squares, normalise_each
from ssl_teach.train import _index_batches


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_cut_squares_matches_a_loop_for_whole_and_per_channel_corners(dtype):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(3, 2, 20, 24, generator=g) * 255).to(dtype)
    size = 5
    corners = torch.stack([torch.randint(0, 20 - size, (3, 4), generator=g),
                           torch.randint(0, 24 - size, (3, 4), generator=g)], -1)
    out = cut_squares(images, corners, size)
    assert out.shape == (3, 4, 2, size, size) and out.dtype == dtype
    per_channel = corners.unsqueeze(2).repeat(1, 1, 2, 1)
    per_channel[:, :, 1] += 1  # the second channel one pixel down and right (still inside)
    shifted = cut_squares(images, per_channel, size)
    for n in range(3):
        for k in range(4):
            top, left = corners[n, k].tolist()
            assert torch.equal(out[n, k], images[n, :, top:top + size, left:left + size])
            assert torch.equal(shifted[n, k, 0], images[n, 0, top:top + size, left:left + size])
            assert torch.equal(shifted[n, k, 1],
                               images[n, 1, top + 1:top + 1 + size, left + 1:left + 1 + size])


def test_cut_squares_rejects_corners_of_the_wrong_shape():
    with pytest.raises(ValueError, match="corners must be"):
        cut_squares(torch.zeros(2, 3, 8, 8), torch.zeros(2, 4, 2, 2, dtype=torch.long), 3)


def test_normalise_each_matches_torch_std_over_the_trailing_axes():
    x = torch.rand(4, 5, 3, 6, 6) * 7 + 2
    ref = (x - x.mean((-3, -2, -1), keepdim=True)) / (x.std((-3, -2, -1), keepdim=True) + 1e-3)
    assert torch.allclose(normalise_each(x, dims=3, eps=1e-3), ref, atol=1e-5)
    flat = torch.full((2, 1, 4, 4), 0.5)
    assert torch.equal(normalise_each(flat), torch.zeros_like(flat))  # flat stays flat, no NaN
    with pytest.raises(ValueError, match="last 3 axes"):
        normalise_each(torch.zeros(4, 4))


@pytest.mark.parametrize("n, size", [(10, 3), (7, 16), (12, 4)])
def test_index_batches_walk_through_seeded_epochs_without_replacement(n, size):
    batches = _index_batches(n, size, torch.Generator().manual_seed(3))
    stream = torch.cat([next(batches) for _ in range(3 * n)]).tolist()  # 3 * size epochs
    assert len(stream) == 3 * n * size
    epochs = [stream[i:i + n] for i in range(0, len(stream), n)]
    assert all(sorted(e) == list(range(n)) for e in epochs)  # every epoch is a permutation
    assert len({tuple(e) for e in epochs}) > 1  # in a fresh order each time
    again = _index_batches(n, size, torch.Generator().manual_seed(3))
    assert torch.cat([next(again) for _ in range(3 * n)]).tolist() == stream
