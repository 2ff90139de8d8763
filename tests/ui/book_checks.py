"""The built book in a real browser (``make test-book``, after ``make book``).

The site in ``build/book/`` is served over HTTP from a free local port, as a static host would
serve it, and opened in Chromium through Playwright:

- every page loads with no console error, no uncaught exception and no failed request (the
  book loads nothing from the network: theme, search index and MathJax are in the folder);
- every image on a page has been decoded with a non-zero size, and every chapter has figures;
- every chapter with widgets shows their static view and says they are live in JupyterLab;
- navigation: the index lists every chapter, and "next" leads from the index through every
  chapter in order;
- search: a query finds the chapter about it;
- screenshots of the index and of one chapter go to ``build/book-shots/``.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path

import pytest
from jupyterlab_checks import chromium_path
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "build" / "book"
SHOTS = ROOT / "build" / "book-shots"
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STATIC_NOTE = "open the notebook in JupyterLab to use it"


@pytest.fixture(scope="session")
def site():
    if not (BOOK / "index.html").is_file():
        pytest.fail(f"no book in {BOOK}: build it first with `make book`")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(BOOK)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), headless=True,
                               args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


class Visit:
    """A page opened in its own tab, with every console error, page error and failed request
    it caused."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"console error: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(
            f"request failed: {r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(
            f"HTTP {r.status}: {r.url}"))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def images(self) -> list[dict]:
        return self.page.evaluate("""() => Array.from(document.images).map(i => ({
            src: i.currentSrc.slice(0, 80), done: i.complete,
            width: i.naturalWidth, height: i.naturalHeight}))""")

    def close(self):
        self.page.close()


def test_the_book_has_every_chapter():
    assert CHAPTERS, "no notebooks found"
    missing = [c for c in CHAPTERS if not (BOOK / f"{c}.html").is_file()]
    assert not missing, f"chapters missing from {BOOK}: {missing}; rebuild with `make book`"


@pytest.mark.parametrize("page", ["index", *CHAPTERS, "search"])
def test_page_loads_cleanly_with_its_figures(page, site, browser):
    visit = Visit(browser, f"{site}/{page}.html")
    try:
        assert not visit.problems, f"{page}.html: " + "; ".join(visit.problems)
        images = visit.images()
        broken = [i for i in images if not (i["done"] and i["width"] > 0 and i["height"] > 0)]
        assert not broken, f"{page}.html: images with no size: {broken}"
        if page in CHAPTERS:
            figures = visit.page.locator(".cell_output img").count()
            assert figures >= 1, f"{page}.html shows no figure from its executed cells"
            text = visit.page.inner_text("article")
            assert "Traceback" not in text, f"{page}.html shows an error"
            widgets = visit.page.locator(".ssl-teach-widget")
            source = (ROOT / "notebooks" / f"{page}.ipynb").read_text()
            if re.search(r"widgets\.[A-Z]\w+\(", source):  # the notebook makes a widget
                assert widgets.count() >= 1, f"{page}.html shows none of its widgets"
                assert STATIC_NOTE in widgets.first.inner_text()
        if page == "index":
            SHOTS.mkdir(parents=True, exist_ok=True)
            visit.page.screenshot(path=str(SHOTS / "index.png"), full_page=True)
        if page == "01_rotation":
            SHOTS.mkdir(parents=True, exist_ok=True)
            visit.page.screenshot(path=str(SHOTS / "01_rotation.png"), full_page=True)
    finally:
        visit.close()


def test_next_leads_through_every_chapter_in_order(site, browser):
    visit = Visit(browser, f"{site}/index.html")
    try:
        page = visit.page
        listed = page.eval_on_selector_all(
            "nav.bd-docs-nav a.reference.internal", "els => els.map(e => e.getAttribute('href'))")
        assert [h.split("#")[0].removesuffix(".html") for h in listed] == CHAPTERS, listed
        for chapter in CHAPTERS:
            page.locator("a.right-next").first.click()
            page.wait_for_load_state("load")
            assert page.url.split("#")[0].endswith(f"/{chapter}.html"), (chapter, page.url)
        assert page.locator("a.right-next").count() == 0, "the last chapter has a next link"
        assert not visit.problems, "; ".join(visit.problems)
    finally:
        visit.close()


@pytest.mark.parametrize("query, chapter", [("jigsaw puzzle", "03_jigsaw"),
                                            ("letterbox", "01_rotation")])
def test_search_finds_the_chapter(query, chapter, site, browser):
    visit = Visit(browser, f"{site}/search.html?q={query.replace(' ', '+')}")
    try:
        results = visit.page.locator("#search-results ul.search li a")
        results.first.wait_for(timeout=20_000)
        hrefs = [results.nth(i).get_attribute("href") for i in range(results.count())]
        assert any(h and h.split("?")[0].split("#")[0].endswith(f"{chapter}.html")
                   for h in hrefs), f"searching {query!r} found {hrefs}, not {chapter}"
        assert not visit.problems, "; ".join(visit.problems)
    finally:
        visit.close()
