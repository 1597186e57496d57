"""The errors of jaxdet's dataset readers and image decoding.

Every one is a ``ValueError`` whose message names the file and, when the problem is in one record, which
record it is (COCO annotation id, VOC object index, YOLO line number, image id).
"""

from __future__ import annotations

import os

__all__ = ["DatasetFormatError", "BadImageError", "InvalidBoxError"]


class DatasetFormatError(ValueError):
    """A malformed annotation file or record.

    The message always names the file and, when the problem is in one record, which record it is (COCO
    annotation id, VOC object index, YOLO line number). ``path``, ``record`` and ``reason`` (the message
    without the file and record) are also kept as attributes.
    """

    def __init__(self, path, message: str, record: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.record = record
        self.reason = message
        where = f"{self.path}" + (f" [{record}]" if record else "")
        super().__init__(f"{where}: {message}")


class BadImageError(DatasetFormatError):
    """An image file that is missing, not an image, truncated or otherwise cannot be decoded.

    Readers raise it under ``on_bad_image="error"`` and count the file under ``"skip"``; ``path`` is the
    image file.
    """


class InvalidBoxError(DatasetFormatError):
    """An object whose geometry is invalid: a box with zero or negative width or height, a box or polygon
    further outside the image than the tolerance, or a degenerate polygon.

    Readers raise it under ``invalid_boxes="error"`` and drop and count the object under ``"drop"``; ``path``
    is the annotation file and ``record`` the object.
    """
