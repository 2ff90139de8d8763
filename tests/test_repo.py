"""Repository conventions: clean notebooks, one source of dependencies, the README's commands."""

import json
import re
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_planned_notebook_is_there():
    names = {p.name for p in NOTEBOOKS}
    assert {"00_introduction.ipynb", "01_rotation.ipynb"} <= names


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [], f"{path.name}: cell {cell.get('id')} has outputs"
                assert cell["execution_count"] is None, f"{path.name}: {cell.get('id')} was run"


def test_notebooks_are_valid_with_stable_unique_cell_ids():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert (nb.nbformat, nb.nbformat_minor) >= (4, 5), path.name
        ids = [cell.id for cell in nb.cells]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate cell ids"
        # readable ids chosen by hand, not random ones made by an editor
        assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", i) for i in ids), path.name


def test_notebooks_start_with_one_configuration_cell():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        for setting in ("PROFILE", "DATASET", "DATA_DIR", "SEED", "DEVICE"):
            assert re.search(rf"^{setting} = ", first.source, re.M), (path.name, setting)


def test_notebooks_do_not_install_packages_or_use_the_network():
    for path in NOTEBOOKS:
        text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells
                         if c.cell_type == "code")
        assert "pip install" not in text and "download=True" not in text, path.name


def _specs(requirements):
    """{package name: version range} of requirement strings such as "torch>=2.2,<2.15"."""
    out = {}
    for r in requirements:
        name = re.split(r"[<>=!~ \[]", r.strip(), maxsplit=1)[0]
        out[name.lower().replace("_", "-")] = r.strip()[len(name):].replace(" ", "")
    return out


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = _specs(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pip.update(_specs(extra))
    deps = (ROOT / "environment.yml").read_text().split("dependencies:", 1)[1]
    conda = _specs(m.group(1) for m in re.finditer(r"^  - ([A-Za-z0-9_.-]+[^:\n]*)$", deps, re.M))
    conda = {("torch" if n == "pytorch" else n): v for n, v in conda.items()
             if n not in {"python", "pip"}}
    assert conda == pip  # same names and the same version ranges


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme
