"""The notebook profile: every second of a notebook's cells goes to one stage."""

import nbformat
import pytest

from ssl_teach.notebook_profile import STAGES, cell_stage, format_profile, main, profile_notebooks

CELLS = {
    "data": "from ssl_teach.data import load_dataset\n"
            "data = load_dataset('scenes', size=32, n_unlabeled=64, n_train=40, n_test=20, seed=1)",
    "train": "from ssl_teach.pretext import get_task\n"
             "from ssl_teach.train import TrainConfig, pretext_accuracy, train\n"
             "cfg = TrainConfig(budget_samples=64, batch_size=32, width=4, depth=3)\n"
             "model = train(get_task('rotation'), data, cfg, progress=False)\n"
             "acc = pretext_accuracy(model, data)",
    "probe": "from ssl_teach.probe import probe\n"
             "result = probe(model.backbone, data)",
    "wait": "import time\n"
            "time.sleep(0.5)",
    "plot": "import matplotlib.pyplot as plt\n"
            "plt.plot([1, 2, 3])\n"
            "plt.show()",
}


@pytest.fixture
def notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# a tiny notebook")]
    for cid, source in CELLS.items():
        cell = nbformat.v4.new_code_cell(source)
        cell.id = cid
        nb.cells.append(cell)
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_every_second_goes_to_one_stage(notebook, tmp_path):
    (res,) = profile_notebooks([notebook], cache=tmp_path / "cache", progress=None)
    assert res["error"] is None
    cells = {c["id"]: c for c in res["cells"]}
    assert list(cells) == list(CELLS)
    for c in res["cells"]:  # a cell's stages add up to its time
        assert sum(c["stages"].values()) == pytest.approx(c["seconds"], rel=1e-6, abs=1e-6)
    assert sum(res["stages"].values()) == pytest.approx(res["total"], rel=1e-6)
    assert set(cells["data"]["stages"]) <= {"data", "other"} and "data" in cells["data"]["stages"]
    # training and the pretext accuracy after it: two stages, the prediction inside training
    # (if any) counted once, for training
    assert {"pretext", "eval"} <= set(cells["train"]["stages"])
    assert {"features", "fits"} <= set(cells["probe"]["stages"])
    assert cells["wait"]["stages"].get("other", 0) >= 0.5
    assert "plots" in cells["plot"]["stages"]
    assert res["kernel_start"] > 0
    table = format_profile([res])
    for stage in STAGES:
        assert stage in table
    assert "tiny.ipynb" in table and "slowest cells" in table


def test_a_failing_cell_stops_the_notebook_and_is_reported(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0"),
                nbformat.v4.new_code_cell("y = 2")]
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i}"
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    (res,) = profile_notebooks([path], cache=tmp_path / "cache", progress=None)
    assert "c1" in res["error"] and "ZeroDivisionError" in res["error"]
    assert [c["id"] for c in res["cells"]] == ["c0", "c1"]


def test_cell_stage_reads_source_and_outputs():
    assert cell_stage({"source": "explorer = widgets.RotationExplorer(m, x)"}) == "widgets"
    assert cell_stage({"source": "ax = viz.plot_probe(results)"}) == "plots"
    assert cell_stage({"source": "show()", "outputs": [{"data": {"image/png": ""}}]}) == "plots"
    assert cell_stage({"source": ["import torch\n", "print(1)"]}) == "other"


def test_missing_notebook_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope.ipynb")]) == 2
    assert "no notebook at" in capsys.readouterr().err
