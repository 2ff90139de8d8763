"""The widgets in a real browser: JupyterLab driven by Chromium (``make test-ui``).

nbval proves that every cell runs in a kernel; these checks prove that a learner who opens a
notebook in JupyterLab sees its widgets and can use them. For each notebook with widgets:

1. JupyterLab (headless, a free port, a random token, a temporary checkpoint cache -- or the
   one a ``make test`` of the same run filled, ``$SSL_TEACH_UI_CACHE`` -- and a temporary copy
   of the notebooks, so nothing is written into the repository) opens the notebook in
   Chromium and runs every cell from the Run menu, as a learner would;
2. every interactive section is found by its code cell, its widget views must be in the page
   (sliders, buttons, dropdowns, the figure they draw), and it is used: a slider is moved, a
   quiz question answered, tiles placed; the widget's output must change as it should;
3. a screenshot of every section goes to ``build/ui/`` for a person to look at.

A failure names the notebook, the section and what was expected. The server, its kernels and
the browser are stopped whatever happens.

Run with ``make test-ui``; it installs Playwright for Python and uses Debian's ``chromium``
(or the browser named by ``$CHROMIUM``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "ui"
RUN_ALL_SECONDS = 900  # the slowest notebook trains for about two minutes on two cores
WIDGET_SECONDS = 60  # a widget's answer to one interaction (it may run the network)


class UICheckFailed(AssertionError):
    """A check in the browser did not hold: says where and what was expected."""


def fail(notebook: str, section: str, expected: str, detail: str = "") -> None:
    raise UICheckFailed(f"{notebook} › {section}: expected {expected}"
                        + (f" ({detail})" if detail else ""))


# --------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab_settings(folder: Path) -> None:
    """User settings of the temporary JupyterLab: every cell in the page (no windowing, so
    that sections far down the notebook can be found) and no news or update pop-ups."""
    settings = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false", "checkForUpdates": False},
    }
    for name, value in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and everything it started (its kernels), politely, then firmly."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the fixtures' clean-up


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port with a token, over a temporary copy of the
    notebooks and a temporary checkpoint cache: (base url, token, api)."""
    work = tmp_path_factory.mktemp("lab")
    notebooks = work / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    _lab_settings(work / "settings")
    port, token = _free_port(), os.urandom(16).hex()
    # no MPLBACKEND: the kernel must draw inline, as it does for a learner
    env = {**{k: v for k, v in os.environ.items() if k != "MPLBACKEND"},
           # $SSL_TEACH_UI_CACHE: a cache `make test` filled in this run (make test-ui CACHE=)
           "SSL_TEACH_CACHE": os.environ.get("SSL_TEACH_UI_CACHE") or str(work / "cache"),
           "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                      os.environ.get("PYTHONPATH")]))}
    log = open(work / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={notebooks}", "--ServerApp.port_retries=0",
         "--LabApp.news_url=", "--ContentsManager.allow_hidden=True"]
        + (["--allow-root"] if os.geteuid() == 0 else []),  # CI containers run as root
        cwd=notebooks, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def api(method: str, path: str):
        req = urllib.request.Request(f"{base}{path}", method=method,
                                     headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            return json.loads(body) if body else None

    # stopped from outside (CI's time limit, Ctrl-C): still stop the server and its kernels
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError("JupyterLab exited at start; its log:\n"
                                   + (work / "jupyterlab.log").read_text()[-3000:])
            try:
                api("GET", "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not answer within 120 s; its log:\n"
                                       + (work / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token, api
    finally:
        _stop(proc)
        log.close()
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- the browser


def chromium_path() -> str:
    """Debian's chromium (Playwright's own browser download is not used)."""
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"),
                      shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("no Chromium found: install Debian's package (apt-get install chromium) "
                       "or set CHROMIUM to the browser's path")


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=chromium_path(), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--no-default-browser-check"])
        try:
            yield b
        finally:
            b.close()


class Notebook:
    """One notebook open in JupyterLab, with the helpers the checks share."""

    def __init__(self, page, name: str):
        self.page, self.name = page, name
        self.panel = page.locator(".jp-NotebookPanel:visible")  # the notebook's own tab

    def wait(self, section: str, expected: str, predicate, *, timeout=WIDGET_SECONDS,
             detail=lambda: "") -> None:
        """Poll ``predicate()`` until it is true, else fail with ``expected``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if predicate():
                    return
            except PlaywrightError:
                pass
            if time.monotonic() > deadline:
                fail(self.name, section, expected, detail())
            self.page.wait_for_timeout(250)

    def cell(self, section: str, source: str):
        """The code cell whose source contains ``source``, scrolled into view."""
        cell = self.panel.locator(".jp-CodeCell").filter(
            has=self.page.locator(".jp-InputArea", has_text=source))
        if cell.count() != 1:
            fail(self.name, section, f"one code cell containing {source!r}",
                 f"found {cell.count()}")
        cell.scroll_into_view_if_needed()
        return cell

    def screenshot(self, cell, section: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{Path(self.name).stem}--{section}.png"
        cell.scroll_into_view_if_needed()
        cell.screenshot(path=str(path))
        return path


def _prompts(panel) -> list[str]:
    return panel.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()


def open_and_run(page, base: str, token: str, name: str) -> Notebook:
    """Open ``name`` in JupyterLab, wait for its kernel, run every cell from the Run menu and
    wait until all have run (fails, with the error shown, if one raised)."""
    nb = Notebook(page, name)
    panel = nb.panel
    # a workspace of its own, reset: only this notebook open, as after a fresh start
    page.goto(f"{base}/lab/workspaces/ui-{Path(name).stem}/tree/{name}?reset&token={token}")
    panel.locator(".jp-Notebook").wait_for(timeout=120_000)
    # A fresh JupyterLab may first ask which kernel to start: take the one offered (the
    # notebook's own, Python 3), as a learner would.
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")

    def kernel_ready() -> bool:
        if dialog.count():
            dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
            return False
        return panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() > 0

    nb.wait("kernel", "the kernel to start and be idle", kernel_ready, timeout=120)
    page.wait_for_timeout(1000)
    if dialog.count():  # asked again once the kernel settled
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()

    def started() -> bool:
        return any(p.strip() == "[*]:" or re.fullmatch(r"\[\d+\]:", p.strip())
                   for p in _prompts(panel))

    for attempt in range(3):  # a click that lands while the kernel settles can be lost
        if dialog.count():
            dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item:visible", has_text=re.compile(r"^Run All Cells")).click()
        deadline = time.monotonic() + 20
        while not started() and time.monotonic() < deadline:
            page.wait_for_timeout(500)
        if started():
            break
    else:
        fail(name, "Run All Cells", "the cells to start running after Run > Run All Cells")

    def finished() -> bool:
        prompts = _prompts(panel)
        busy = panel.locator(".jp-Notebook-ExecutionIndicator[data-status='busy']").count()
        return bool(prompts) and not busy and all(re.fullmatch(r"\[\d+\]:", p.strip())
                                                  for p in prompts)

    def errors() -> str:
        shown = panel.locator(".jp-OutputArea-output[data-mime-type="
                              "'application/vnd.jupyter.stderr']").all_inner_texts()
        traces = [t for t in shown if "Error" in t or "Traceback" in t]
        pending = [p for p in _prompts(panel) if not re.fullmatch(r"\[\d+\]:", p.strip())]
        return (f"{len(pending)} cells did not run; " + (traces[-1][-1500:] if traces else
                                                          "no error shown"))

    def stopped() -> bool:  # a cell raised: the rest of Run All is cancelled
        idle = panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count()
        prompts = _prompts(panel)
        return idle and any(p.strip() in ("[ ]:", "[]:") for p in prompts) and any(
            re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts)

    deadline = time.monotonic() + RUN_ALL_SECONDS
    while not finished():
        if time.monotonic() > deadline:
            fail(name, "Run All Cells", f"every cell to run within {RUN_ALL_SECONDS} s",
                 errors())
        if stopped():
            page.wait_for_timeout(2000)  # a last output may still be arriving
            if stopped() and not finished():
                fail(name, "Run All Cells", "every cell to run without an error", errors())
        page.wait_for_timeout(1000)
    return nb


def output_image(cell) -> str:
    """The figure a widget's Output shows (its PNG as a data URL), or ''."""
    img = cell.locator(".jp-OutputArea .widget-output img")
    return img.first.get_attribute("src") if img.count() else ""


def widget_text(cell, selector: str) -> str:
    loc = cell.locator(selector)
    return loc.first.inner_text() if loc.count() else ""


def slider(cell, label: str):
    """The ipywidgets slider whose description is ``label``."""
    return cell.locator(".widget-slider", has=cell.page.locator(
        ".widget-label", has_text=re.compile(rf"^{re.escape(label)}$")))


def move_slider(nb: Notebook, section: str, cell, label: str, presses: int) -> tuple[str, str]:
    """Move a slider by keyboard, as a learner can; returns its readout before and after."""
    s = slider(cell, label)
    if s.count() != 1:
        fail(nb.name, section, f"a slider labelled {label!r}", f"found {s.count()}")
    readout = s.locator(".widget-readout")
    before = readout.inner_text()
    handle = s.locator(".noUi-handle")
    handle.focus()
    for _ in range(presses):
        handle.press("ArrowRight")
    nb.wait(section, f"the {label!r} slider to move away from {before}",
            lambda: readout.inner_text() != before, timeout=10)
    return before, readout.inner_text()


# --------------------------------------------------------------------------- the checks


def check_views(nb: Notebook, section: str, cell, counts: dict[str, int]) -> None:
    """The widget views are in the page: at least ``n`` elements of each selector."""
    for selector, n in counts.items():
        nb.wait(section, f"at least {n} rendered {selector!r} widget views",
                lambda selector=selector, n=n: cell.locator(selector).count() >= n,
                detail=lambda selector=selector: f"found {cell.locator(selector).count()}")


def status_section(nb: Notebook, section: str, source: str, counts: dict[str, int], *,
                   shows: tuple[str, ...] = (), expected: str = ""):
    """A widget with a status line (its code cell contains ``source``): its views are there
    (:func:`check_views`) and its status shows every text in ``shows`` (``expected`` says what
    that means). Returns the cell and a function that reads the status."""
    cell = nb.cell(section, source)
    check_views(nb, section, cell, {**counts, ".widget-html": 1})
    status = lambda: widget_text(cell, ".widget-html")  # noqa: E731
    if not all(text in status() for text in shows):
        fail(nb.name, section, expected, status())
    return cell, status


def slide_and_redraw(nb: Notebook, section: str, cell, status, label: str, presses: int,
                     expected: str) -> None:
    """Move the slider ``label``; the figure and the status must both change."""
    before, said = output_image(cell), status()
    move_slider(nb, section, cell, label, presses)
    nb.wait(section, expected, lambda: output_image(cell) not in ("", before)
            and status() != said, detail=status)


def answer_one(nb: Notebook, section: str, source: str, *, buttons: int,
               questions: tuple[str, str], button: str, said: str, shot: str) -> None:
    """A "be the network" game (its code cell contains ``source``): its views are there, it
    starts at ``questions[0]``; clicking ``button`` must move it to ``questions[1]``, with a
    score out of 1, the answer repeated ("you said ...") and the next question's picture."""
    cell = nb.cell(section, source)
    check_views(nb, section, cell, {".widget-button": buttons, ".widget-html": 1,
                                    ".widget-output img": 1})
    status = lambda: widget_text(cell, ".widget-html")  # noqa: E731
    first, second = questions
    if first not in status():
        fail(nb.name, section, f"the game to start at {first!r}", status())
    before = output_image(cell)
    cell.locator(".widget-button", has_text=button).click()
    nb.wait(section, f"{second!r}, a score out of 1 and 'you said {said}' after answering",
            lambda: second in status() and f"you said {said}" in status()
            and re.search(r"you [01]/1", status()), detail=status)
    nb.wait(section, "the next question's picture",
            lambda: output_image(cell) not in ("", before))
    nb.screenshot(cell, shot)


def check_rotation(nb: Notebook) -> None:
    section = "rotation explorer"
    cell = nb.cell(section, "explorer = widgets.RotationExplorer(")
    check_views(nb, section, cell, {".widget-slider": 2, ".widget-output img": 1})
    before = output_image(cell)
    _, after = move_slider(nb, section, cell, "turn (°)", 1)
    if after != "15":
        fail(nb.name, section, "one step of the turn slider to read 15 (degrees)", after)
    nb.wait(section, "the figure to change when the image is turned",
            lambda: output_image(cell) not in ("", before))
    nb.screenshot(cell, "explorer")

    answer_one(nb, "rotation quiz", "quiz = widgets.RotationQuiz(", buttons=4,
               questions=("Question 1/10", "Question 2/10"), button="90°", said="90°",
               shot="quiz")


def check_exemplar(nb: Notebook) -> None:
    section = "exemplar explorer"
    cell = nb.cell(section, "explorer = widgets.ExemplarExplorer(")
    check_views(nb, section, cell, {".widget-slider": 11, ".widget-button": 1,
                                    ".widget-output img": 1})
    before = output_image(cell)
    move_slider(nb, section, cell, "rotation (°)", 10)
    nb.wait(section, "the transformed patch to change when it is rotated",
            lambda: output_image(cell) not in ("", before))
    turned = output_image(cell)
    nb.screenshot(cell, "explorer-rotated")
    cell.locator(".widget-button", has_text="reset").click()
    nb.wait(section, "reset to put the rotation slider back to 0",
            lambda: slider(cell, "rotation (°)").locator(".widget-readout").inner_text()
            in ("0", "0.0", "0.00"))
    nb.wait(section, "reset to redraw the untransformed patch",
            lambda: output_image(cell) not in ("", turned))


def check_jigsaw(nb: Notebook) -> None:
    section = "jigsaw game"
    cell, status = status_section(
        nb, section, "game = widgets.JigsawGame(",
        {".widget-dropdown select": 9, ".widget-button": 1, ".widget-output img": 1},
        shows=("Puzzle 1/5",), expected="the game to start at 'Puzzle 1/5'")
    selects = cell.locator(".widget-dropdown select")
    submit = cell.locator(".widget-button", has_text="check my puzzle")
    # a letter used twice is refused with a message, and the puzzle stays
    selects.nth(0).select_option("B")
    submit.click()
    nb.wait(section, "a repeated letter to be refused ('use every letter once')",
            lambda: "use every letter once" in status() and "Puzzle 1/5" in status(),
            detail=status)
    # place the tiles: swap the first two cells' letters back into a valid order
    selects.nth(1).select_option("A")
    before = output_image(cell)
    submit.click()
    nb.wait(section, "'Puzzle 2/5' and a tile score out of 9 after placing the tiles",
            lambda: "Puzzle 2/5" in status() and re.search(r"you: \d/9 tiles", status()),
            detail=status)
    nb.wait(section, "the next puzzle's tiles", lambda: output_image(cell) not in
            ("", before))
    nb.screenshot(cell, "game")


def check_relative_patch(nb: Notebook) -> None:
    answer_one(nb, "relative patch game", "game = widgets.RelativePatchGame(", buttons=9,
               questions=("Pair 1/10", "Pair 2/10"), button="→", said="right", shot="game")


def check_contrastive(nb: Notebook) -> None:
    section = "two-view explorer"
    cell, status = status_section(
        nb, section, "explorer = widgets.TwoViewExplorer(",
        {".widget-slider": 2, ".widget-checkbox": 4, ".widget-output img": 1},
        shows=("colour_jitter", "ranks"),
        expected="the status to list the families switched on and the partner's rank")
    before = output_image(cell)
    move_slider(nb, section, cell, "draw", 1)
    nb.wait(section, "new views when the draw slider moves",
            lambda: output_image(cell) not in ("", before))
    drawn, said = output_image(cell), status()
    cell.locator(".widget-checkbox", has_text="colour jitter").locator("input").click()
    nb.wait(section, "colour jitter to leave the families switched on, and the views to "
                     "change, when its box is unticked",
            lambda: "colour_jitter" not in status() and status() != said
            and output_image(cell) not in ("", drawn), detail=status)
    nb.screenshot(cell, "explorer")

    answer_one(nb, "find the partner", "game = widgets.PartnerGame(", buttons=8,
               questions=("Question 1/10", "Question 2/10"), button="3", said="3",
               shot="game")


def check_predicting_pixels(nb: Notebook) -> None:
    section = "recolourer"
    cell, status = status_section(
        nb, section, "recolourer = widgets.Recolourer(",
        {".widget-slider": 2, ".widget-output img": 1}, shows=("true colour bin", "temperature"),
        expected="the status to give the share of pixels in their true colour bin and the "
                 "temperature")
    slide_and_redraw(nb, section, cell, status, "temperature", 20,
                     "new colours and a new temperature in the status when the temperature "
                     "slider moves")
    nb.screenshot(cell, "recolourer")

    section = "inpainting painter"
    cell, status = status_section(
        nb, section, "painter = widgets.InpaintingPainter(",
        {".widget-slider": 4, ".widget-output img": 1},
        shows=("network 0.", "diffusion from the border 0."),
        expected="the status to compare the network's error with diffusion's")
    slide_and_redraw(nb, section, cell, status, "top", 4,
                     "the hole to move and the errors to change when the top slider moves")
    slide_and_redraw(nb, section, cell, status, "hole side", 3,
                     "a larger hole (more hidden pixels) when the side slider moves")
    nb.screenshot(cell, "painter")


CHECKS = {
    "01_rotation.ipynb": check_rotation,
    "02_exemplar.ipynb": check_exemplar,
    "03_jigsaw.ipynb": check_jigsaw,
    "04_relative_patch_location.ipynb": check_relative_patch,
    "06_contrastive_learning.ipynb": check_contrastive,
    "07_predicting_pixels.ipynb": check_predicting_pixels,
}


def test_every_notebook_with_widgets_is_checked():
    """A new notebook with widgets needs its browser check here."""
    with_widgets = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")
                          if "widgets." in p.read_text())
    assert with_widgets == sorted(CHECKS)


@pytest.mark.parametrize("name", list(CHECKS))
def test_widgets_render_and_respond(name, lab, browser):
    base, token, api = lab
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        nb = open_and_run(page, base, token, name)
        CHECKS[name](nb)
    except UICheckFailed:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{Path(name).stem}--FAILED.png"))
        raise
    except PlaywrightTimeout as err:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{Path(name).stem}--FAILED.png"))
        raise UICheckFailed(f"{name}: the page did not get where expected ({err})") from err
    finally:
        context.close()
        for session in api("GET", "/api/sessions") or []:  # free the kernel's memory
            api("DELETE", f"/api/sessions/{session['id']}")
