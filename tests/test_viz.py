"""Plot helpers that compute something: Grad-CAM names its block as the probe tables do."""

import pytest
import torch

from ssl_teach import viz
from ssl_teach.models import Classifier, LinearHead, build_backbone


def _model():
    backbone = build_backbone(width=4, depth=3, seed=0)
    return Classifier(backbone, LinearHead(backbone.out_channels, 4)).eval()


def test_grad_cam_reads_the_named_block():
    model, x = _model(), torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 3])
    cam = viz.grad_cam(model, x, targets, block="block2")
    assert cam.shape == (2, 16, 16) and 0 <= cam.min() and cam.max() <= 1
    assert torch.equal(viz.grad_cam(model, x, targets), viz.grad_cam(model, x, targets,
                                                                     block="block3"))
    assert not torch.equal(cam, viz.grad_cam(model, x, targets, block="block1"))


def test_grad_cam_refuses_an_unknown_block():
    with pytest.raises(ValueError, match="block4.*block1, block2, block3"):
        viz.grad_cam(_model(), torch.rand(1, 3, 16, 16), torch.tensor([0]), block="block4")
