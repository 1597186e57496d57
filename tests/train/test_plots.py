"""``train.plots``: counters on their own panel, every evaluation and AR in the mAP plot, images saved pixel for
pixel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from train import plots

TRAIN = [
    {"kind": "train", "step": s, "loss": 4.0 / s, "cls": 2.0 / s, "obj": 1.0 / s, "lr": 1e-3, "grad_norm": 3.0,
     "param_norm": 30.0, "skipped": 0.0, "skipped_steps": 0.0, "dropped_boxes": float(s // 20),
     "images_per_sec": 500.0}
    for s in (10, 20, 30)
]
EVALS = [{"kind": "eval", "step": s, "mAP": 0.1 * i, "mAP50": 0.2 * i, "AR100": 0.3 * i, "num_images": 256.0}
         for i, s in enumerate((10, 20, 30), 1)]


@pytest.fixture
def figures(monkeypatch):
    """The figures plot_history saves, by file name, with their axes' line labels and data."""
    seen = {}
    save = plots._save

    def capture(fig, plt, out_dir, name):
        seen[name] = [
            {"yscale": ax.get_yscale(), "lines": {ln.get_label(): (ln.get_xdata(), ln.get_ydata(), ln.get_marker())
                                                  for ln in ax.get_lines()}}
            for ax in fig.axes
        ]
        return save(fig, plt, out_dir, name)

    monkeypatch.setattr(plots, "_save", capture)
    return seen


def test_split_train_keys_separates_counters():
    losses, counters = plots.split_train_keys(TRAIN)
    assert losses == ["cls", "loss", "obj"]
    assert counters == ["dropped_boxes", "skipped", "skipped_steps"]
    # A key not named as a count but whole-numbered (and not all 0) is a counter too.
    _, counters = plots.split_train_keys([{**r, "late_boxes": 3.0} for r in TRAIN])
    assert "late_boxes" in counters
    # The recipe's accumulation flag and batches per update are neither counters nor losses.
    losses, counters = plots.split_train_keys([{**r, "updated": float(i % 2), "accumulate": 4.0}
                                               for i, r in enumerate(TRAIN)])
    assert "updated" not in counters + losses and "accumulate" not in counters + losses
    losses, _ = plots.split_train_keys([{**r, "o2m_weight": 0.8, "lr_cls": 0.03} for r in TRAIN])
    assert "o2m_weight" not in losses and "lr_cls" not in losses  # schedules, not loss terms


def test_counters_not_on_the_log_loss_axis(tmp_path, figures):
    written = plots.plot_history({"train": TRAIN, "eval": EVALS}, str(tmp_path))
    assert {p.rsplit("/", 1)[-1] for p in written} >= {"loss_terms.png", "map.png"}
    loss_ax, count_ax = figures["loss_terms.png"]
    assert loss_ax["yscale"] == "log" and set(loss_ax["lines"]) == {"loss", "cls", "obj"}
    assert count_ax["yscale"] == "linear" and set(count_ax["lines"]) == {"dropped_boxes", "skipped", "skipped_steps"}


def test_map_plot_marks_every_evaluation_and_ar(tmp_path, figures):
    plots.plot_history({"train": TRAIN, "eval": EVALS}, str(tmp_path))
    (ax,) = figures["map.png"]
    names = {label.split(" ")[0]: v for label, v in ax["lines"].items()}
    assert set(names) == {"mAP", "mAP50", "AR100"}  # AR too, no counts (num_images) on the 0-1 axis
    for x, y, marker in names.values():
        assert list(x) == [10, 20, 30] and marker == "o"
    np.testing.assert_allclose(names["AR100"][1], [0.3, 0.6, 0.9])


def test_save_image_pixel_for_pixel(tmp_path):
    grid = np.random.default_rng(0).integers(0, 256, (130, 270, 3), dtype=np.uint8)
    path = plots.save_image(grid, str(tmp_path / "g.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), grid)
    titled = np.asarray(Image.open(plots.save_image(grid, str(tmp_path / "t.png"), title="step 5")).convert("RGB"))
    assert titled.shape[1] == 270 and titled.shape[0] > 130
    np.testing.assert_array_equal(titled[-130:], grid)  # the image below its title band, unscaled


def test_no_empty_alpha_axis_without_alpha(tmp_path, figures):
    plots.plot_history({"train": TRAIN}, str(tmp_path))
    (ax,) = figures["alpha_lr.png"]  # the learning rate alone: no twin axis for an alpha that was never logged
    assert set(ax["lines"]) == {"lr"}
    plots.plot_history({"train": [{**r, "alpha": 0.5} for r in TRAIN]}, str(tmp_path))
    assert [set(a["lines"]) for a in figures["alpha_lr.png"]] == [{"alpha"}, {"lr"}]
