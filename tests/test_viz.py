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


def test_chance_corrected_puts_every_task_on_one_scale():
    assert viz.chance_corrected(0.25, 0.25) == 0.0  # chance
    assert viz.chance_corrected(1.0, 0.01) == 1.0  # perfect, however many classes
    # dividing by chance would rank a 100-class task at 50% far above a 4-class task at 95%
    assert viz.chance_corrected(0.95, 0.25) > viz.chance_corrected(0.5, 0.01)


def test_label_efficiency_plots_both_protocols_and_the_sweep():
    import matplotlib

    matplotlib.use("Agg")
    from test_results import fake_compare, fake_sweep

    res = fake_compare()
    probe_ax = viz.plot_label_efficiency(res)
    ft_ax = viz.plot_label_efficiency(res, key="finetune")
    probe_labels = [t.get_text() for t in probe_ax.get_legend().get_texts()]
    ft_labels = [t.get_text() for t in ft_ax.get_legend().get_texts()]
    assert "supervised (probe)" in probe_labels and "from scratch (random init)" in ft_labels
    assert len(ft_labels) == len(res["methods"])
    with pytest.raises(ValueError, match="key must be"):
        viz.plot_label_efficiency(res, key="knn")
    left, right = viz.plot_sweep(fake_sweep())
    assert "from scratch (± std)" in [t.get_text() for t in right.get_legend().get_texts()]
    assert [t.get_text() for t in left.get_xticklabels()] == ["1x", "2x"]
