"""Which config fields a run reads, given its choices, so that a field set on the command line is never ignored.

Some fields only matter under a choice: the folder fields under a ``data.name`` that reads files, the
augmentation's fields under its ``data.augment`` recipe, the loss weights under the head that has them, the
optimizer fields under their ``train.recipe``. ``python -m train --config.data.train_images=DIR`` on the synthetic
shapes would otherwise train on the shapes for minutes and exit 0. :func:`unread_overrides` names every
overridden field that the run's choices leave unread, and the choice that would read it; ``python -m train``
stops with exit status 2 on any.
"""

from __future__ import annotations

from typing import Sequence

import ml_collections

from jaxdet.models import HEADS
from train.data import FILE_FORMATS, SYNTHETIC_NAMES, augment_recipe

#: ``data.*`` fields read only under some choices: field -> (the choice's name, the values that read it).
_FOLDERS = ("data.name", FILE_FORMATS)
DATA_FIELD_USE: dict[str, tuple[str, tuple[str, ...]]] = {
    **{f: _FOLDERS for f in ("train_path", "train_images", "val_path", "val_images", "class_names", "resize",
                              "cache", "cache_dir", "on_bad_image", "invalid_boxes")},
    "yaml": ("data.name", ("yolo",)),
    "label_cache": ("data.name", ("coco", "yolo")),
    "label_cache_dir": ("data.name", ("coco", "yolo")),
    "train_size": ("data.name", SYNTHETIC_NAMES),
    "val_size": ("data.name", SYNTHETIC_NAMES),
    "min_objects": ("data.name", ("shapes",)),
    "max_objects_per_image": ("data.name", ("shapes",)),
    "scale_range": ("data.augment", ("flip_scale",)),
    "hflip_prob": ("data.augment", ("flip_scale", "yolo")),
    **{f: ("data.augment", ("yolo",)) for f in ("mosaic", "close_mosaic", "degrees", "translate", "scale", "shear",
                                               "hsv_h", "hsv_s", "hsv_v")},
}
#: ``train.*`` fields read only by one recipe (``train.recipe``), or only with the model EMA (``train.ema``).
TRAIN_FIELD_USE: dict[str, tuple[str, tuple[object, ...]]] = {
    "end_lr_factor": ("train.recipe", ("jaxdet",)),
    **{f: ("train.recipe", ("ultralytics",)) for f in ("lrf", "momentum", "nbs", "optimizer", "warmup_bias_lr",
                                                       "warmup_momentum")},
    "ema_decay": ("train.ema", (True,)),
    "ema_tau": ("train.ema", (True,)),
}
#: further conditions on fields that one choice overrides: ``train.optimizer="auto"`` sets the learning rate and
#: the warm-up bias learning rate itself, as ultralytics' ``optimizer=auto`` ignores ``lr0`` (train/recipe.py).
_SET_BY_AUTO = ("train.optimizer", ("sgd", "adamw", "musgd"))
EXTRA_FIELD_USE: dict[str, tuple[str, tuple[object, ...]]] = {
    "train.learning_rate": _SET_BY_AUTO,
    "train.warmup_bias_lr": _SET_BY_AUTO,
}


def _choice(config: ml_collections.ConfigDict, dotted: str) -> object:
    if dotted == "data.augment":
        return augment_recipe(config)
    section, _, field = dotted.partition(".")
    return config[section].get(field, {"train.recipe": "jaxdet", "train.ema": False}.get(dotted))


def _loss_fields(head: str) -> set[str]:
    """The ``loss.*`` fields the head reads: its declared fields, and those its ``from_config`` adds."""
    cls = HEADS[head]
    return set(cls.loss_defaults) | set(cls.extra_loss_fields)


def unread_overrides(config: ml_collections.ConfigDict, overridden: Sequence[str]) -> list[str]:
    """One message for every dotted field in ``overridden`` that ``config``'s choices do not read.

    Args:
      config: the run's config, overrides applied.
      overridden: the dotted fields given on the command line (``"data.train_images"``, ...).

    Returns:
      ``"--config.data.train_images is read only when data.name is one of coco, voc, yolo; this run's data.name
      is 'shapes'"``-style messages, in the order of ``overridden``; empty when every field is read.
    """
    messages = []
    head = str(config.model.get("head", "")) if "model" in config else ""
    for dotted in overridden:
        section, _, field = dotted.partition(".")
        field = field.partition(".")[0]  # a sub-section (loss.alpha.name) is read with its section
        use = {"data": DATA_FIELD_USE, "train": TRAIN_FIELD_USE}.get(section, {}).get(field)
        for choice, values in [c for c in (use, EXTRA_FIELD_USE.get(f"{section}.{field}")) if c is not None]:
            current = _choice(config, choice)
            if current not in values:
                readers = ", ".join(str(v) for v in values)
                messages.append(f"--config.{dotted} is read only when {choice} is one of {readers}; this run's "
                                f"{choice} is {current!r}")
                break
        if section == "loss" and head in HEADS and field not in _loss_fields(head):
            others = sorted(name for name in HEADS if name != head and field in _loss_fields(name))
            where = f"; the {', '.join(others)} head reads it" if others else ""
            messages.append(f"--config.{dotted} is not read by the {head} head (model.head){where}")
    return messages
