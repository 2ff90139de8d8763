"""Repository conventions: clean notebooks, one source of dependencies, the README's commands."""

import json
import os
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
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme
    # the browser checks load what make test trained: one fresh cache folder for both
    assert re.search(r'make test CACHE="\$cache"\nmake test-ui CACHE="\$cache"', ci)
    assert re.search(r"cache=\$\(mktemp -d\)", ci)
    # then the book, built from the same cache, and its browser check
    assert re.search(r'make test-ui CACHE="\$cache"\nmake book CACHE="\$cache"\nmake test-book', ci)


def test_make_test_refuses_a_cache_that_is_not_fresh(tmp_path):
    """make test CACHE=DIR must train from nothing: a folder with anything in it is refused
    before a single test runs."""
    import subprocess

    cache = tmp_path / "cache"
    (cache / "checkpoints").mkdir(parents=True)
    # STAMP: an installation stamp newer than pyproject.toml, so that make builds no environment
    # (the check runs before one is needed)
    stamp = tmp_path / "installed"
    stamp.touch()
    future = (ROOT / "pyproject.toml").stat().st_mtime + 86_400
    os.utime(stamp, (future, future))
    res = subprocess.run(["make", "-s", "test", f"CACHE={cache}", f"STAMP={stamp}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "is not empty: make test trains from a fresh cache" in res.stderr


# A measured number in prose goes stale the day the code changes: code cells print them.
# The papers' own numbers may be quoted where the paragraph says whose they are.
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?\s?%|(?<![\w./:-])\d+\.\d+(?![\w./-])|\b\d+\s?(?:s|min)\b")
_CITATION = re.compile(r"et al\.|[Tt]he paper|papers'|[Rr]eported|arXiv|\((?:19|20)\d\d\)")


def _markdown_numbers(source: str) -> list[str]:
    """Paragraphs of a markdown cell that state a number a run could measure, uncited. A list
    whose lead-in paragraph cites a paper ("The paper's recipe:") quotes that paper."""
    found, cited_list = [], False
    text = re.sub(r"`[^`]*`|\]\([^)]*\)", "", source)  # inline code and link targets
    for para in re.split(r"\n\s*\n|\n(?=\s*(?:[-*]|\d+\.) )", text):
        item = re.match(r"\s*(?:[-*]|\d+\.) ", para) is not None
        cited = _CITATION.search(para) is not None or (item and cited_list)
        if not item:
            cited_list = cited and para.rstrip().endswith(":")
        if _NUMBER.search(para) and not cited:
            found.append(para.strip()[:120])
    return found


def test_markdown_states_no_measured_numbers():
    stale = [f"{path.name}: {para}" for path in NOTEBOOKS
             for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "markdown"
             for para in _markdown_numbers(cell.source)]
    assert not stale, "print measured numbers from code; prose may quote the papers:\n" + \
        "\n".join(stale)


def test_the_markdown_number_check_catches_what_it_should():
    assert _markdown_numbers("The whole image wins (in our run 62.9% against 33.1%).")
    assert _markdown_numbers("It trains in about 45 s on a laptop.")
    assert _markdown_numbers("Accuracy rose to 0.84 after training.")
    assert not _markdown_numbers("Gidaris et al. report 89.06% on CIFAR-10.")
    assert not _markdown_numbers("Chance is one in ten; see `acc = 0.25` and [x](https://a/1.5)")
    assert not _markdown_numbers("The paper's recipe:\n\n1. scale (0.7-1.4)\n2. hue (0.1)")
    assert _markdown_numbers("Our recipe:\n\n1. scale (0.7-1.4)\n2. hue (0.1)")
