"""Interactive explorers and "be the network" games, built with ipywidgets.

Every widget class keeps its logic in plain methods (``set``, ``answer``, ...) that the
buttons and sliders call, so a notebook — or a test — can drive it without a browser, and
``display(obj)`` (or ending a cell with ``obj``) shows it in JupyterLab.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io

import ipywidgets as w
import matplotlib.pyplot as plt
import torch
from IPython.display import clear_output, display
from torch import nn

from .data import to_float
from .viz import to_display


def show_in(out: w.Output, fig) -> None:
    """Replace what an Output widget shows with a matplotlib figure (and keep it as a PNG for
    the widget's static view, see :func:`static_html`)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    out.static_png = buffer.getvalue()
    with out:
        clear_output(wait=True)
        display(fig)
    plt.close(fig)


def _clear(out: w.Output) -> None:
    """Empty an Output widget (and its static view)."""
    out.static_png = None
    with out:
        clear_output()


STATIC_NOTE = ("This is the widget as it stood when the page was built; "
               "open the notebook in JupyterLab to use it.")


def static_html(widget: w.Widget) -> str:
    """The view of a widget tree as plain HTML, as it stands now: boxes as rows and columns,
    figures as images, text as text, controls with their values (not interactive).

    A page built without a kernel (the course's book) shows this in place of the live widget;
    JupyterLab shows the live widget and ignores it.
    """
    if isinstance(widget, w.Box):
        direction = "row" if isinstance(widget, w.HBox) else "column"
        style = f"display:flex;flex-direction:{direction};gap:6px;flex-wrap:wrap"
        if isinstance(widget, w.GridBox):
            columns = widget.layout.grid_template_columns or "auto"
            style = f"display:grid;grid-template-columns:{columns};gap:4px"
        inner = "".join(static_html(c) for c in widget.children)
        return f'<div style="{style};align-items:flex-start">{inner}</div>'
    if isinstance(widget, w.Output):
        png = getattr(widget, "static_png", None)
        if not png:
            return "<div></div>"
        data = base64.b64encode(png).decode("ascii")
        return f'<img alt="figure" src="data:image/png;base64,{data}"/>'
    if isinstance(widget, w.HTML):
        return f"<div>{widget.value}</div>"
    if isinstance(widget, w.Button):
        return f"<button disabled>{html.escape(widget.description)}</button>"
    if isinstance(widget, w.Checkbox):
        mark = " checked" if widget.value else ""
        return (f'<label><input type="checkbox" disabled{mark}/> '
                f"{html.escape(widget.description)}</label>")
    if isinstance(widget, (w.IntSlider, w.FloatSlider, w.Dropdown)):
        value = widget.label if isinstance(widget, w.Dropdown) else widget.value
        return (f"<span><b>{html.escape(widget.description)}</b> "
                f"<code>{html.escape(str(value))}</code></span>")
    return f"<span>{html.escape(type(widget).__name__)}</span>"


@torch.no_grad()
def _probabilities(model, inputs: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return model(inputs).softmax(-1)
    finally:
        model.train(was_training)


class _Widget:
    """Shows ``self.widget`` when the object is displayed."""

    widget: w.Widget

    def _repr_mimebundle_(self, **kwargs):
        """The live widget for JupyterLab, and its static view (:func:`static_html`) for pages
        rendered without a kernel."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/html"] = (f'<div class="ssl-teach-widget">{static_html(self.widget)}'
                               f'<p><em>{STATIC_NOTE}</em></p></div>')
        return bundle


# --------------------------------------------------------------------------------------------
# 01_rotation


def turn_image(image: torch.Tensor, degrees: int) -> torch.Tensor:
    """One image (C, S, S) turned anticlockwise: exact for multiples of 90°, interpolated with
    black corners otherwise."""
    from .pretext.rotation import rotate, rotate_by_angle

    if degrees % 90 == 0:
        return rotate(image[None], degrees // 90)[0]
    return rotate_by_angle(image[None], torch.tensor([float(degrees)]))[0]


class RotationExplorer(_Widget):
    """Pick an image and turn it; watch the network's probabilities for 0°, 90°, 180°, 270°."""

    def __init__(self, model, images: torch.Tensor, *, class_names=("0°", "90°", "180°", "270°")):
        self.model, self.images, self.class_names = model, to_float(images), class_names
        self.index = w.IntSlider(0, 0, len(images) - 1, description="image")
        self.angle = w.IntSlider(0, 0, 345, step=15, description="turn (°)")
        self.out = w.Output()
        self.index.observe(lambda _: self.update(), names="value")
        self.angle.observe(lambda _: self.update(), names="value")
        self.widget = w.VBox([w.HBox([self.index, self.angle]), self.out])
        self.probs = None
        self.update()

    def set(self, *, index: int | None = None, angle: int | None = None) -> torch.Tensor:
        """Move the sliders (as a learner would) and return the new probabilities."""
        if index is not None:
            self.index.value = index
        if angle is not None:
            self.angle.value = angle
        return self.probs

    def update(self) -> None:
        img = turn_image(self.images[self.index.value], self.angle.value)
        self.probs = _probabilities(self.model, img[None])[0]
        fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(6.5, 2.6))
        ax_img.imshow(to_display(img), interpolation="nearest")
        ax_img.set_title(f"turned {self.angle.value}° anticlockwise", fontsize=9)
        ax_img.axis("off")
        colors = ["tab:green" if i * 90 == self.angle.value else "tab:blue" for i in range(4)]
        ax_bar.bar(self.class_names, self.probs.numpy(), color=colors)
        ax_bar.set_ylim(0, 1)
        ax_bar.set_title("network: which turn was it?", fontsize=9)
        fig.tight_layout()
        show_in(self.out, fig)


class RotationQuiz(_Widget):
    """Be the network: say how each image was turned; your score is compared with the model's
    on the same questions."""

    def __init__(self, model, images: torch.Tensor, *, n_questions: int = 10, seed: int = 0,
                 class_names=("0°", "90°", "180°", "270°")):
        from .pretext.rotation import rotate

        if n_questions > len(images):
            raise ValueError(f"n_questions={n_questions} but only {len(images)} images given")
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(images), generator=g)[:n_questions]
        self.turns = torch.randint(0, 4, (n_questions,), generator=g)
        self.questions = rotate(to_float(images[pick]), self.turns)
        self.model_answers = _probabilities(model, self.questions).argmax(1)
        self.class_names = class_names
        self.answers: list[int] = []
        self.out = w.Output()
        self.status = w.HTML()
        buttons = []
        for k, name in enumerate(class_names):
            b = w.Button(description=name, layout=w.Layout(width="70px"))
            b.on_click(lambda _, k=k: self.answer(k))
            buttons.append(b)
        self.widget = w.VBox([w.HBox(buttons), self.status, self.out])
        self.update()

    @property
    def done(self) -> bool:
        return len(self.answers) >= len(self.questions)

    @property
    def learner_score(self) -> int:
        return sum(int(a == t) for a, t in zip(self.answers, self.turns.tolist()))

    @property
    def model_score(self) -> int:
        """The model's score on the questions answered so far (same questions as yours)."""
        n = len(self.answers)
        return int((self.model_answers[:n] == self.turns[:n]).sum())

    def answer(self, k: int) -> bool:
        """Answer the current question with turn ``k`` (0..3); returns whether it was right."""
        if self.done:
            return False
        if k not in range(4):
            raise ValueError(f"answer with a turn index 0..3 (0°, 90°, 180°, 270°), got {k!r}")
        right = k == int(self.turns[len(self.answers)])
        self.answers.append(k)
        self.update()
        return right

    def update(self) -> None:
        n = len(self.answers)
        score = (f"you {self.learner_score}/{n} · network {self.model_score}/{n}")
        if self.done:
            self.status.value = f"<b>Finished.</b> {score}"
            _clear(self.out)
            return
        last = ""
        if n:
            t, m = int(self.turns[n - 1]), int(self.model_answers[n - 1])
            last = (f" · last: it was {self.class_names[t]}, you said "
                    f"{self.class_names[self.answers[-1]]}, the network said {self.class_names[m]}")
        self.status.value = f"Question {n + 1}/{len(self.questions)} · {score}{last}"
        fig, ax = plt.subplots(figsize=(2.4, 2.4))
        ax.imshow(to_display(self.questions[n]), interpolation="nearest")
        ax.axis("off")
        ax.set_title("how was this turned?", fontsize=9)
        show_in(self.out, fig)


# --------------------------------------------------------------------------------------------
# 03_jigsaw


class JigsawGame(_Widget):
    """Be the network: put the nine shuffled tiles of a puzzle back in their cells, against
    the clock; the network answers the same puzzles and both scores (tiles placed right, whole
    puzzles solved, seconds per puzzle) are shown side by side."""

    LETTERS = "ABCDEFGHI"

    def __init__(self, model, task, images: torch.Tensor, *, n_puzzles: int = 5, seed: int = 0):
        import time

        from .pretext import jigsaw

        if n_puzzles > len(images):
            raise ValueError(f"n_puzzles={n_puzzles} but only {len(images)} images given")
        self._clock = time.perf_counter
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(images), generator=g)[:n_puzzles]
        imgs = to_float(images[pick])
        # No colour guards in the game: they are there to stop the network cheating, not you.
        params = jigsaw.sample_params(n_puzzles, num_permutations=task.num_permutations,
                                      gap=task.gap, channels=imgs.shape[1], gray_share=0.0,
                                      channel_shift=0, jitter=task.jitter, generator=g)
        self.permutations = task.permutations
        kw = {"permutations": self.permutations, "tile_size": task.tile_size, "gap": task.gap}
        self.tiles, self.targets = jigsaw.apply(imgs, params, normalise=False, **kw)
        self.orders = self.permutations[self.targets].long()  # the true order of each puzzle
        t0 = self._clock()
        probs = _probabilities(model, jigsaw.normalise_tiles(self.tiles))
        self.model_seconds = (self._clock() - t0) / n_puzzles
        self.model_orders = self.permutations[probs.argmax(1)].long()
        self.answers: list[torch.Tensor] = []
        self.seconds: list[float] = []
        self.choice = [w.Dropdown(options=list(self.LETTERS), value=self.LETTERS[i],
                                  layout=w.Layout(width="60px")) for i in range(9)]
        submit = w.Button(description="done: check my puzzle")
        submit.on_click(lambda _: self._submit())
        self.choice_grid = w.GridBox(self.choice, layout=w.Layout(
            grid_template_columns="repeat(3, 70px)"))
        self.out = w.Output()
        self.status = w.HTML()
        self.widget = w.VBox([self.status, w.HBox([self.out, w.VBox([
            w.HTML("which tile goes in each cell?"), self.choice_grid, submit])])])
        self.update()

    @property
    def done(self) -> bool:
        return len(self.answers) >= len(self.orders)

    def current_choice(self) -> list[int]:
        """The dropdowns as an order: position i's tile goes to the cell whose dropdown
        names letter i."""
        cells = [self.LETTERS.index(d.value) for d in self.choice]  # cell k <- tile at position
        order = [-1] * 9
        for cell, position in enumerate(cells):
            order[position] = cell
        return order

    def _submit(self) -> None:
        try:
            self.answer(self.current_choice())
        except ValueError:
            self.status.value += " · <b>use every letter once</b>"

    def answer(self, order) -> int:
        """Answer the current puzzle: ``order[i]`` is the cell (0..8, row-major) where the tile
        shown at position i belongs. Returns how many tiles you placed right."""
        if self.done:
            return 0
        order = torch.as_tensor(list(order)).long()
        if sorted(order.tolist()) != list(range(9)):
            raise ValueError("an answer puts each of the 9 tiles in a different cell 0..8, "
                             f"got {order.tolist()}: every letter must be used once")
        n = len(self.answers)
        self.seconds.append(self._clock() - self._start)
        self.answers.append(order)
        self.update()
        return int((order == self.orders[n]).sum())

    def scores(self) -> dict:
        """Tiles placed right, puzzles solved and seconds per puzzle, for you and the
        network, over the puzzles answered so far."""
        n = len(self.answers)
        truth = self.orders[:n]
        mine = torch.stack(self.answers) if n else truth
        net = self.model_orders[:n]
        return {
            "puzzles": n,
            "you": {"tiles": int((mine == truth).sum()), "solved": int((mine == truth).all(1)
                                                                        .sum()),
                    "seconds": sum(self.seconds) / max(n, 1)},
            "network": {"tiles": int((net == truth).sum()),
                        "solved": int((net == truth).all(1).sum()),
                        "seconds": self.model_seconds},
        }

    def update(self) -> None:
        s = self.scores()
        n = s["puzzles"]
        line = (f"you: {s['you']['tiles']}/{9 * n} tiles, {s['you']['solved']}/{n} puzzles, "
                f"{s['you']['seconds']:.1f} s each · network: {s['network']['tiles']}/{9 * n} "
                f"tiles, {s['network']['solved']}/{n} puzzles, "
                f"{1000 * s['network']['seconds']:.1f} ms each")
        if self.done:
            self.status.value = f"<b>Finished.</b> {line}"
            _clear(self.out)
            return
        self.status.value = f"Puzzle {n + 1}/{len(self.orders)} · {line}"
        fig, ax = plt.subplots(figsize=(2.6, 2.6))
        from .viz import show_tile_grid

        show_tile_grid(self.tiles[n], labels=self.LETTERS, ax=ax, title="shuffled tiles")
        show_in(self.out, fig)
        self._start = self._clock()


# --------------------------------------------------------------------------------------------
# 04_relative_patch_location

ARROWS = ("↖", "↑", "↗", "←", "→", "↙", "↓", "↘")
"""One arrow per relative position label 0..7 (row-major, centre skipped)."""


class RelativePatchGame(_Widget):
    """Be the network: a centre patch and one neighbour; click where the neighbour was cut
    from. Your score is compared with the network's on the same pairs."""

    def __init__(self, model, task, images: torch.Tensor, *, n_questions: int = 10,
                 seed: int = 0):
        from .pretext.relative_patch import make_pairs, sample_params

        if n_questions > len(images):
            raise ValueError(f"n_questions={n_questions} but only {len(images)} images given")
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(images), generator=g)[:n_questions]
        shown = task.prepare_images(to_float(images[pick]))
        geometry = {"patch": task.patch, "gap": task.gap, "jitter": task.jitter}
        params = sample_params(n_questions, image_size=tuple(shown.shape[-2:]), generator=g,
                               **geometry)
        self.pairs, self.targets = make_pairs(shown, params, **geometry)  # what you see
        inputs = task.prepare_patches(self.pairs, generator=g)  # what the network sees
        self.model_answers = _probabilities(model, inputs).argmax(1)
        self.class_names = task.class_names
        self.answers: list[int] = []
        self.out = w.Output()
        self.status = w.HTML()
        rows = []
        for r in range(3):
            row = []
            for c in range(3):
                if (r, c) == (1, 1):
                    b = w.Button(description="C", disabled=True, layout=w.Layout(width="48px"))
                else:
                    k = 3 * r + c - (1 if 3 * r + c > 4 else 0)
                    b = w.Button(description=ARROWS[k], tooltip=self.class_names[k],
                                 layout=w.Layout(width="48px"))
                    b.on_click(lambda _, k=k: self.answer(k))
                row.append(b)
            rows.append(w.HBox(row))
        self.widget = w.VBox([w.HBox([w.VBox(rows), self.out]), self.status])
        self.update()

    @property
    def done(self) -> bool:
        return len(self.answers) >= len(self.targets)

    @property
    def learner_score(self) -> int:
        return sum(int(a == t) for a, t in zip(self.answers, self.targets.tolist()))

    @property
    def model_score(self) -> int:
        """The network's score on the pairs answered so far (the same pairs as yours)."""
        n = len(self.answers)
        return int((self.model_answers[:n] == self.targets[:n]).sum())

    def answer(self, k: int) -> bool:
        """Answer the current pair with position ``k`` (0..7); returns whether it was right."""
        if self.done:
            return False
        if k not in range(8):
            raise ValueError(f"answer with a position label 0..7 (row-major, centre skipped), "
                             f"got {k!r}")
        right = k == int(self.targets[len(self.answers)])
        self.answers.append(k)
        self.update()
        return right

    def update(self) -> None:
        n = len(self.answers)
        score = f"you {self.learner_score}/{n} · network {self.model_score}/{n}"
        last = ""
        if n:
            t, m = int(self.targets[n - 1]), int(self.model_answers[n - 1])
            last = (f" · last: it was {self.class_names[t]}, you said "
                    f"{self.class_names[self.answers[-1]]}, the network said "
                    f"{self.class_names[m]}")
        if self.done:
            self.status.value = f"<b>Finished.</b> {score}{last}"
            _clear(self.out)
            return
        self.status.value = f"Pair {n + 1}/{len(self.targets)} · {score}{last}"
        fig, axes = plt.subplots(1, 2, figsize=(3.6, 1.9))
        for ax, patch, title in zip(axes, self.pairs[n], ("centre", "neighbour: where?")):
            ax.imshow(to_display(patch), cmap="gray", interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        show_in(self.out, fig)


# --------------------------------------------------------------------------------------------
# 02_exemplar


class ExemplarExplorer(_Widget):
    """Transform one seed patch with a slider per transformation; does the network still name
    its surrogate class?"""

    SLIDERS = {  # parameter: (description, min, max, step, identity value)
        "shift_x": ("shift x (px)", -6.4, 6.4, 0.4, 0.0),
        "shift_y": ("shift y (px)", -6.4, 6.4, 0.4, 0.0),
        "scale": ("scale", 0.7, 1.4, 0.05, 1.0),
        "angle": ("rotation (°)", -20.0, 20.0, 1.0, 0.0),
        "contrast": ("PCA contrast", 0.5, 2.0, 0.05, 1.0),
        "sat_power": ("sat. power", 0.25, 4.0, 0.05, 1.0),
        "val_power": ("value power", 0.25, 4.0, 0.05, 1.0),
        "factor": ("S,V factor", 0.7, 1.4, 0.05, 1.0),
        "offset": ("S,V shift", -0.1, 0.1, 0.01, 0.0),
        "hue": ("hue shift", -0.1, 0.1, 0.01, 0.0),
    }

    def __init__(self, model, task, windows: torch.Tensor, *, labels: torch.Tensor | None = None,
                 basis=None):
        from .pretext import exemplar

        self.model, self.task, self.windows = model, task, to_float(windows)
        self.labels = torch.arange(len(windows)) if labels is None else labels
        self.basis = basis if basis is not None else task.colour_basis(self.windows)
        self._exemplar = exemplar
        self.index = w.IntSlider(0, 0, len(windows) - 1, description="seed")
        self.sliders = {k: w.FloatSlider(v[4], min=v[1], max=v[2], step=v[3], description=v[0],
                                         continuous_update=False)
                        for k, v in self.SLIDERS.items()}
        self.reset_button = w.Button(description="reset")
        self.reset_button.on_click(lambda _: self.reset())
        self.out = w.Output()
        for s in (self.index, *self.sliders.values()):
            s.observe(lambda _: self.update(), names="value")
        boxes = list(self.sliders.values())
        self.widget = w.VBox([w.HBox([self.index, self.reset_button]),
                              w.HBox([w.VBox(boxes[:5]), w.VBox(boxes[5:])]), self.out])
        self.probs = None
        self.update()

    def params(self) -> dict[str, torch.Tensor]:
        """The sliders' values as one sample's transformation parameters."""
        v = {k: s.value for k, s in self.sliders.items()}
        c = self.windows.shape[1]
        p = self._exemplar.identity_params(1, channels=c)
        p.update(shift=torch.tensor([[v["shift_x"], v["shift_y"]]]),
                 scale=torch.tensor([v["scale"]]), angle=torch.tensor([v["angle"]]),
                 contrast=torch.full((1, c), v["contrast"]),
                 sat_power=torch.tensor([v["sat_power"]]),
                 val_power=torch.tensor([v["val_power"]]),
                 sat_factor=torch.tensor([v["factor"]]), val_factor=torch.tensor([v["factor"]]),
                 sat_shift=torch.tensor([v["offset"]]), val_shift=torch.tensor([v["offset"]]),
                 hue_shift=torch.tensor([v["hue"]]))
        return p

    def patch(self) -> torch.Tensor:
        """The seed patch transformed by the sliders' values: (C, P, P)."""
        mean, comps = self.basis
        window = self.windows[self.index.value][None]
        return self._exemplar.apply(window, self.params(), patch_size=self.task.patch_size,
                                    mean=mean, components=comps)[0]

    def set(self, *, index: int | None = None, **values) -> torch.Tensor:
        """Move the sliders (as a learner would) and return the network's probabilities."""
        unknown = set(values) - set(self.sliders)
        if unknown:
            raise ValueError(f"unknown sliders {sorted(unknown)}; use {list(self.sliders)}")
        if index is not None:
            self.index.value = index
        for k, v in values.items():
            self.sliders[k].value = v
        return self.probs

    def reset(self) -> None:
        """Every slider back to 'no change'."""
        for k, s in self.sliders.items():
            s.value = self.SLIDERS[k][4]

    @property
    def recognised(self) -> bool:
        """Does the network's top class name the seed's own surrogate class?"""
        return int(self.probs.argmax()) == int(self.labels[self.index.value])

    @property
    def rank(self) -> int:
        """Rank of the seed's own class among all surrogate classes (1 = top)."""
        own = self.probs[int(self.labels[self.index.value])]
        return int((self.probs > own).sum()) + 1

    def update(self) -> None:
        patch = self.patch()
        self.probs = _probabilities(self.model, patch[None])[0]
        own = int(self.labels[self.index.value])
        m = self.task.context
        seed = self.windows[self.index.value][:, m:m + self.task.patch_size,
                                              m:m + self.task.patch_size]
        fig, axes = plt.subplots(1, 2, figsize=(4.6, 2.5))
        for ax, img, title in ((axes[0], seed, f"seed {own}"), (axes[1], patch, "transformed")):
            ax.imshow(to_display(img), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        verdict = "recognised" if self.recognised else f"not recognised (rank {self.rank})"
        fig.suptitle(f"{verdict}: p(own class) = {float(self.probs[own]):.2f}", fontsize=9,
                     color="tab:green" if self.recognised else "tab:red")
        fig.tight_layout()
        show_in(self.out, fig)


# --------------------------------------------------------------------------------------------
# 06_contrastive_learning


class TwoViewExplorer(_Widget):
    """One image and its two augmented views, the augmentation families switched on and off
    one by one; with a SimCLR network, the two views' cosine similarity and where the partner
    ranks among the views of ``group`` images (the image and the ones after it)."""

    FAMILIES = {"crop": "crop", "flip": "flip", "colour_jitter": "colour jitter",
                "grayscale": "grayscale"}

    def __init__(self, task, images: torch.Tensor, *, model=None):
        from .pretext import simclr

        if len(images) < 2:
            raise ValueError("the explorer needs at least 2 images (a partner and a negative)")
        self.task, self.images, self.model = task, to_float(images), model
        self._simclr = simclr
        self.index = w.IntSlider(0, 0, len(images) - 1, description="image")
        self.draw = w.IntSlider(0, 0, 99, description="draw")
        self.switches = {f: w.Checkbox(value=getattr(task, f), description=label, indent=False)
                         for f, label in self.FAMILIES.items()}
        for control in (self.index, self.draw, *self.switches.values()):
            control.observe(lambda _: self.update(), names="value")
        self.out = w.Output()
        self.status = w.HTML()
        self.widget = w.VBox([w.HBox([self.index, self.draw]),
                              w.HBox(list(self.switches.values())), self.out, self.status])
        self.similarity = self.rank = None
        self.update()

    def set(self, *, index: int | None = None, draw: int | None = None, **families) -> None:
        """Move the sliders and switch families on or off (``colour_jitter=False``), as a
        learner would."""
        unknown = set(families) - set(self.switches)
        if unknown:
            raise ValueError(f"unknown augmentation families {sorted(unknown)}; "
                             f"use {list(self.switches)}")
        if index is not None:
            self.index.value = index
        if draw is not None:
            self.draw.value = draw
        for f, on in families.items():
            self.switches[f].value = bool(on)

    def current_task(self):
        """The task with the families as switched."""
        return dataclasses.replace(self.task, **{f: s.value for f, s in self.switches.items()})

    def views(self) -> torch.Tensor:
        """The views of the chosen image and of the images after it (group images in all):
        (2 x group, C, V, V), the chosen image's two views first."""
        group = min(self.task.group, len(self.images))
        pick = (self.index.value + torch.arange(group)) % len(self.images)
        g = torch.Generator().manual_seed(self.draw.value)
        return self.current_task().make_batch(self.images[pick], generator=g)[0]

    def update(self) -> None:
        views = self.views()
        task = self.current_task()
        text = f"switched on: {', '.join(task.families) or 'nothing'}"
        if self.model is not None:
            z = self._simclr.project(self.model, views)
            logits = self._simclr.nt_xent_logits(z, temperature=1.0, group=len(views) // 2)
            self.similarity = float(logits[0, 0])  # view 0's partner sits at position 0
            self.rank = int((logits[0] > logits[0, 0]).sum()) + 1
            text += (f" · cosine similarity of the two views {self.similarity:.2f} · the "
                     f"partner ranks {self.rank} of {logits.shape[1]} candidates")
        self.status.value = text
        fig, axes = plt.subplots(1, 3, figsize=(5.4, 2.0))
        shown = (self.images[self.index.value], views[0], views[1])
        for ax, img, title in zip(axes, shown, ("image", "view 1", "view 2")):
            ax.imshow(to_display(img), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        show_in(self.out, fig)


class PartnerGame(_Widget):
    """Be the network: one view of an image and ``candidates`` views, one of them the other
    view of the same image; click the partner. The network answers with the candidate whose
    projection is most similar (cosine) to the view's; both scores are shown."""

    def __init__(self, model, task, images: torch.Tensor, *, n_questions: int = 10,
                 candidates: int = 8, seed: int = 0):
        from .pretext import simclr

        if not 2 <= candidates <= 9:
            raise ValueError(f"candidates must be 2..9 (one button each), got {candidates}")
        if n_questions * candidates > len(images):
            raise ValueError(f"{n_questions} questions of {candidates} candidates need "
                             f"{n_questions * candidates} images, only {len(images)} given")
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(images), generator=g)[:n_questions * candidates]
        views = task.make_batch(to_float(images[pick]), generator=g)[0]
        first, second = views[0::2], views[1::2]  # image i's views at 2i and 2i + 1
        shape = (n_questions, candidates)
        order = torch.stack([torch.randperm(candidates, generator=g) for _ in range(n_questions)])
        rows = torch.arange(n_questions).view(-1, 1) * candidates
        self.queries = first[rows[:, 0]]  # the first image of each question's block
        self.candidates = second[(rows + order).flatten()].view(*shape, *second.shape[1:])
        self.targets = (order == 0).float().argmax(1)  # where image 0's other view went
        z_query = simclr.project(model, self.queries)
        z_cand = simclr.project(model, self.candidates.flatten(0, 1)).view(*shape, -1)
        sim = torch.einsum("nd,nkd->nk", nn.functional.normalize(z_query, dim=1),
                           nn.functional.normalize(z_cand, dim=2))
        self.model_answers = sim.argmax(1)
        self.answers: list[int] = []
        self.out = w.Output()
        self.status = w.HTML()
        buttons = []
        for k in range(candidates):
            b = w.Button(description=str(k + 1), tooltip=f"candidate {k + 1}",
                         layout=w.Layout(width="48px"))
            b.on_click(lambda _, k=k: self.answer(k))
            buttons.append(b)
        self.widget = w.VBox([self.out, w.HBox(buttons), self.status])
        self.update()

    @property
    def done(self) -> bool:
        return len(self.answers) >= len(self.targets)

    @property
    def learner_score(self) -> int:
        return sum(int(a == t) for a, t in zip(self.answers, self.targets.tolist()))

    @property
    def model_score(self) -> int:
        """The network's score on the questions answered so far (the same ones as yours)."""
        n = len(self.answers)
        return int((self.model_answers[:n] == self.targets[:n]).sum())

    def answer(self, k: int) -> bool:
        """Answer the current question with candidate ``k`` (0-based; the buttons show k + 1);
        returns whether it was the partner."""
        if self.done:
            return False
        if k not in range(self.candidates.shape[1]):
            raise ValueError(f"answer with a candidate 0..{self.candidates.shape[1] - 1}, "
                             f"got {k!r}")
        right = k == int(self.targets[len(self.answers)])
        self.answers.append(k)
        self.update()
        return right

    def update(self) -> None:
        n = len(self.answers)
        score = f"you {self.learner_score}/{n} · network {self.model_score}/{n}"
        last = ""
        if n:
            last = (f" · last: it was {int(self.targets[n - 1]) + 1}, you said "
                    f"{self.answers[-1] + 1}, the network said "
                    f"{int(self.model_answers[n - 1]) + 1}")
        if self.done:
            self.status.value = f"<b>Finished.</b> {score}{last}"
            _clear(self.out)
            return
        self.status.value = f"Question {n + 1}/{len(self.targets)} · {score}{last}"
        k = self.candidates.shape[1]
        fig, axes = plt.subplots(1, k + 1, figsize=(1.15 * (k + 1), 1.6))
        shown = [self.queries[n], *self.candidates[n]]
        titles = ["this view", *(str(i + 1) for i in range(k))]
        for ax, img, title in zip(axes, shown, titles):
            ax.imshow(to_display(img), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=9, fontweight="bold" if title == "this view" else None)
            ax.axis("off")
        fig.tight_layout()
        show_in(self.out, fig)


# --------------------------------------------------------------------------------------------
# 07_predicting_pixels


class InpaintingPainter(_Widget):
    """Hide a square of a test image where you like and see the context encoder paint it, next
    to diffusion from the border (:func:`~ssl_teach.pretext.inpainting.diffuse_fill`, the fill
    that copies the context inwards) and the truth; the status compares their errors on the
    hidden pixels."""

    def __init__(self, model, task, images: torch.Tensor):
        from .pretext import inpainting

        if len(images) < 1:
            raise ValueError("the painter needs at least one image")
        self.model, self.task, self.images = model, task, to_float(images)
        self._inpainting = inpainting
        size = min(self.images.shape[-2:])
        default = task.sides(size)[0]
        self.index = w.IntSlider(0, 0, len(images) - 1, description="image")
        self.side = w.IntSlider(default, 2, size - 2, description="hole side")
        self.row = w.IntSlider((size - default) // 2, 0, size - 2, description="top")
        self.col = w.IntSlider((size - default) // 2, 0, size - 2, description="left")
        for control in (self.index, self.side, self.row, self.col):
            control.observe(lambda _: self.update(), names="value")
        self.out = w.Output()
        self.status = w.HTML()
        self.widget = w.VBox([w.HBox([self.index, self.side]), w.HBox([self.row, self.col]),
                              self.out, self.status])
        self.network_error = self.diffusion_error = None
        self.update()

    def set(self, *, index: int | None = None, side: int | None = None,
            top: int | None = None, left: int | None = None) -> None:
        """Choose the image and place the hidden square, as a learner would with the sliders
        (the square is kept inside the image)."""
        for control, value in ((self.index, index), (self.side, side), (self.row, top),
                               (self.col, left)):
            if value is not None:
                control.value = value

    def hidden(self) -> torch.Tensor:
        """The hidden square as a mask (1, 1, H, W), moved inside the image if it sticks out."""
        _, h, wd = self.images.shape[1:]
        side = self.side.value
        top, left = min(self.row.value, h - side), min(self.col.value, wd - side)
        mask = torch.zeros(1, 1, h, wd, dtype=torch.bool)
        mask[..., top:top + side, left:left + side] = True
        return mask

    def update(self) -> None:
        image = self.images[self.index.value][None]
        hidden = self.hidden()
        masked, _, joined = self.task.paint(self.model, image, hidden)
        diffused = self._inpainting.diffuse_fill(masked, hidden)
        spot = hidden.expand_as(image)

        def error(x):
            return float((x[spot] - image[spot]).square().mean())

        self.network_error, self.diffusion_error = error(joined), error(diffused)
        better = "the network" if self.network_error < self.diffusion_error else "diffusion"
        self.status.value = (f"mean squared error on the {int(hidden.sum())} hidden pixels: "
                             f"network {self.network_error:.4f} · diffusion from the border "
                             f"{self.diffusion_error:.4f} · closer: {better}")
        fig, axes = plt.subplots(1, 4, figsize=(7.2, 2.0))
        shown = (masked[0], joined[0], diffused[0], image[0])
        for ax, img, title in zip(axes, shown, ("what the network sees", "network",
                                                "diffusion", "truth")):
            ax.imshow(to_display(img), interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        show_in(self.out, fig)


class Recolourer(_Widget):
    """Take the colour out of a test image and let the colorization network put it back: its
    lightness, the network's colours at the chosen annealed-mean temperature, and the truth;
    the status gives how many output pixels fall in their true colour bin."""

    def __init__(self, model, task, images: torch.Tensor):
        if len(images) < 1:
            raise ValueError("the recolourer needs at least one image")
        self.model, self.task, self.images = model, task, to_float(images)
        self.index = w.IntSlider(0, 0, len(images) - 1, description="image")
        self.temperature = w.FloatSlider(task.temperature, min=0.05, max=1.0, step=0.01,
                                         description="temperature",
                                         style={"description_width": "initial"})
        for control in (self.index, self.temperature):
            control.observe(lambda _: self.update(), names="value")
        self.out = w.Output()
        self.status = w.HTML()
        self.widget = w.VBox([w.HBox([self.index, self.temperature]), self.out, self.status])
        self.bin_accuracy = None
        self.update()

    def set(self, *, index: int | None = None, temperature: float | None = None) -> None:
        """Choose the image and the temperature, as a learner would with the sliders."""
        if index is not None:
            self.index.value = index
        if temperature is not None:
            self.temperature.value = temperature

    def coloured(self) -> torch.Tensor:
        """The chosen image as the network colours it, (3, H, W) in [0, 1]."""
        return self._coloured

    @torch.no_grad()
    def update(self) -> None:
        image = self.images[self.index.value][None]
        inputs, targets = self.task.make_batch(image)
        was_training = self.model.training
        self.model.eval()
        try:
            logits = self.model(inputs)
        finally:
            self.model.train(was_training)
        self.bin_accuracy = float((logits.argmax(1) == targets).float().mean())
        self._coloured = self.task.colours(logits, inputs, temperature=self.temperature.value)[0]
        self.status.value = (f"{self.bin_accuracy:.0%} of the {targets.numel()} output pixels "
                             f"in their true colour bin (of {self.task.num_classes}) · "
                             f"temperature {self.temperature.value:.2f}: lower is more vivid, "
                             f"1 is the plain mean")
        fig, axes = plt.subplots(1, 3, figsize=(5.4, 2.0))
        shown = (inputs[0].expand(3, -1, -1), self._coloured, image[0])
        for ax, img, title in zip(axes, shown, ("lightness (the input)", "network", "truth")):
            ax.imshow(to_display(img), interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        show_in(self.out, fig)
