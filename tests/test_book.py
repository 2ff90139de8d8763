"""The book's Sphinx project (ssl_teach.book): what `make book` renders, without executing it.
The built site itself is checked in a browser by `make test-book` (tests/ui/book_checks.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ssl_teach import book, results

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_mathjax(tmp_path, monkeypatch):
    folder = tmp_path / "mathjax-static"
    folder.mkdir()
    (folder / "MathJax.js").write_text("// stand-in")
    monkeypatch.setattr(book, "_mathjax", lambda: folder)


def test_chapters_are_the_course_notebooks_in_order():
    names = [p.name for p in book.chapters()]
    assert names == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert names[0].startswith("00_")


def test_index_page_lists_every_chapter_with_source_and_student_copy():
    paths = book.chapters()
    text = book.index_page(paths, (ROOT / "README.md").read_text())
    for p in paths:
        row = next(line for line in text.splitlines() if f"]({p.name})" in line)
        assert book.chapter_title(p) in row
        assert f"<downloads/notebooks/{p.name}>" in row and f"<downloads/student/{p.name}>" in row
    # the toctree orders the chapters
    toc = re.search(r"```\{toctree\}\n(.*?)```", text, re.S).group(1)
    assert [line for line in toc.splitlines() if line and not line.startswith(":")] == \
        [p.stem for p in paths]
    # the comparison tables come from the committed records, as in the README
    for path in results.committed():
        assert results.markdown(results.load(path)) in text
    assert "make lab" in text  # the set-up commands
    assert "Start reading here" not in text  # the README's pointer to the book, not in it


def test_a_notebook_missing_from_the_readme_table_is_named():
    paths = [*book.chapters(), Path("99_new_chapter.ipynb")]
    with pytest.raises(ValueError, match="99_new_chapter"):
        book.index_page(paths, (ROOT / "README.md").read_text())


def test_prepare_writes_a_sphinx_project(tmp_path, no_mathjax):
    src = tmp_path / "book-src"
    paths = book.prepare(src)
    assert (src / "conf.py").is_file() and (src / "index.md").is_file()
    conf = (src / "conf.py").read_text()
    compile(conf, "conf.py", "exec")
    settings: dict = {}
    exec(conf, settings)
    assert settings["nb_execution_mode"] == "force" and settings["nb_execution_raise_on_error"]
    assert settings["nb_ipywidgets_js"] == {}  # nothing from a CDN
    assert ("html", book.WIDGET_VIEW, None) in settings["nb_mime_priority_overrides"]
    assert not settings["mathjax_path"].startswith("http")
    assert (src / "_static" / "mathjax" / "MathJax.js").is_file()
    for p in paths:
        assert (src / p.name).read_bytes() == p.read_bytes()
        student = json.loads((src / "downloads" / "student" / p.name).read_text())
        # the student copy tags each stubbed solution "exercise"
        stubs = [c for c in student["cells"] if "exercise" in c["metadata"].get("tags", [])]
        assert stubs and all("NotImplementedError" in "".join(c["source"]) for c in stubs)
    book.prepare(src)  # a second call replaces the project


def _refused_and_untouched(folder: Path, call, match: str) -> None:
    """``call(folder)`` on a folder holding someone's file fails with ``match``; the file stays."""
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match=match):
        call(folder)
    assert (folder / "keep.txt").read_text() == "mine"


def test_prepare_and_build_refuse_a_folder_they_did_not_make(tmp_path):
    _refused_and_untouched(tmp_path / "other", book.prepare, "not a book source folder")
    _refused_and_untouched(tmp_path / "site", book.build, "other than a book")


def test_widgets_have_a_static_view_that_says_they_are_live_in_jupyterlab():
    import ipywidgets as w
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssl_teach import widgets

    out = w.Output()
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    widgets.show_in(out, fig)
    status = w.HTML("<b>score 3/5</b>")

    class Demo(widgets._Widget):
        def __init__(self):
            self.widget = w.VBox([w.HBox([w.IntSlider(4, description="image"),
                                          w.Button(description="go")]), status, out])

    bundle = Demo()._repr_mimebundle_()
    assert book.WIDGET_VIEW in bundle  # JupyterLab still gets the live widget
    html = bundle["text/html"]
    assert "data:image/png;base64," in html and "<b>score 3/5</b>" in html
    assert "<code>4</code>" in html and "<button disabled>go</button>" in html
    assert widgets.STATIC_NOTE in html
    widgets._clear(out)
    assert "data:image/png" not in widgets.static_html(out)
