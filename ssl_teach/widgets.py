"""Interactive explorers and "be the network" games, built with ipywidgets.

Every widget class keeps its logic in plain methods (``set``, ``answer``, ...) that the
buttons and sliders call, so a notebook — or a test — can drive it without a browser, and
``display(obj)`` (or ending a cell with ``obj``) shows it in JupyterLab.
"""

from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch
from IPython.display import clear_output, display

from .data import to_float
from .viz import to_display


def show_in(out: w.Output, fig) -> None:
    """Replace what an Output widget shows with a matplotlib figure."""
    with out:
        clear_output(wait=True)
        display(fig)
    plt.close(fig)


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

    def _ipython_display_(self):
        display(self.widget)


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
            with self.out:
                clear_output()
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
