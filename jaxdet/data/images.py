"""Decoding real-world image files to uint8 RGB, upright, the way ultralytics reads them.

:func:`read_image` is the one decoder of jaxdet: :meth:`~jaxdet.data.records.DetectionRecord.load_image`, the
readers' size checks (:func:`image_size`, :func:`verify_image`) and prediction on arbitrary files use it.

Rules (ultralytics 8.4.190 reads with ``ultralytics.utils.patches.imread``, i.e. ``cv2.imdecode(...,
IMREAD_COLOR)``; where the two can be compared the tests check pixel equality against it):

* **EXIF orientation is applied** (``PIL.ImageOps.exif_transpose``), for every format. The image is what a
  viewer shows, and its *displayed* size is the size annotations refer to: YOLO's normalised coordinates are
  fractions of it, and COCO ``width``/``height`` and VOC ``<size>`` must equal it (ultralytics'
  ``exif_size`` in ``verify_image_label`` swaps width and height for orientations 5-8 in the same way, and
  ``cv2.imread`` rotates JPEGs upright). An annotation that gives the stored size of a rotated image is an
  error (see :func:`~jaxdet.data.records.check_image_size`); for orientations 2-4 (flips, 180 degrees) the
  size cannot tell, so annotations made on the stored pixels of such files come out mirrored.
* **Channels:** grayscale (``L``, ``1``) is repeated to 3 channels; alpha (``RGBA``, ``LA``, ``PA``) is
  dropped without compositing, keeping the stored colour under it (as ``cv2.imread`` does); palette images
  (``P``, also with a transparent index) are mapped through the palette; ``CMYK`` and ``YCbCr`` are converted
  by Pillow (CMYK JPEGs agree with OpenCV to 1 grey level).
* **16-bit** (``I;16*`` and 16-bit-range ``I`` images, e.g. 16-bit PNG/TIFF grayscale) keep the high byte:
  ``v >> 8`` (``I`` values clipped to ``[0, 65535]`` first), as ``cv2.imread`` converts 16-bit images without
  ``IMREAD_ANYDEPTH``; Pillow's own ``convert`` would clip at 255 instead. 16-bit RGB files come from
  Pillow already reduced to their high byte. Other modes (e.g. 32-bit float ``F``) use Pillow's
  ``convert("RGB")``.
* Multi-frame files (GIF, multi-page TIFF) give their first frame.

Anything that fails to open or decode raises :class:`~jaxdet.data.errors.BadImageError` naming the file.

References:
  ultralytics 8.4.190: ``ultralytics/utils/patches.py::imread``, ``ultralytics/data/utils.py::exif_size``,
  ``check_image``, ``verify_image_label``.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
from PIL import Image, ImageOps

from jaxdet.data.errors import BadImageError

__all__ = ["read_image", "image_size", "verify_image"]

_EXIF_ORIENTATION = 274
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# Formats whose orientation tag Pillow leaves to exif_transpose (their header size is the stored size); for
# the others (TIFF is already transposed when opened in Pillow 13, WebP varies) the size is read by decoding.
_SWAP_BY_HEADER = ("JPEG", "MPO", "PNG")


@contextlib.contextmanager
def _bad_image(path, failure: str):
    """Re-raise what opening or decoding ``path`` raises as :class:`BadImageError` naming the file
    (``"<failure> (<exception type>: <message>)"``; a missing file says so)."""
    try:
        yield
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(path, "image file does not exist") from None
    except Exception as err:  # Pillow signals bad data with OSError, SyntaxError, ValueError, struct.error, ...
        raise BadImageError(path, f"{failure} ({type(err).__name__}: {err})") from None


def _to_rgb8(im) -> np.ndarray:
    """A PIL image as uint8 ``[h, w, 3]`` (the channel and bit-depth rules of the module doc)."""
    if im.mode in _SIXTEEN_BIT_MODES:
        high = (np.clip(np.asarray(im), 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
        return np.repeat(high[..., None], 3, axis=-1)
    return np.asarray(im.convert("RGB"))


def read_image(path) -> np.ndarray:
    """Decode an image file to uint8 ``[h, w, 3]`` RGB, EXIF orientation applied (the module doc's rules).

    Args:
      path: the image file (any format Pillow reads: JPEG, PNG, TIFF, BMP, WebP, GIF, ...).

    Returns:
      uint8 ``[h, w, 3]``, ``(h, w)`` the displayed size (:func:`image_size`).

    Raises:
      BadImageError: naming ``path`` when the file is missing, not an image, truncated or corrupt.
    """
    with _bad_image(path, "cannot decode image"), Image.open(path) as im:
        return _to_rgb8(ImageOps.exif_transpose(im))


def _orientation(im) -> int | None:
    """The EXIF orientation tag of an opened image, read without decoding it."""
    if im.format == "PNG" and "exif" not in im.info:
        # Pillow would decode the whole file to look for an eXIf chunk after the image data; writers put it
        # before (Pillow, exiftool), where the header parse has already found it.
        return None
    try:
        return im.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # an unreadable EXIF block: Pillow's exif_transpose ignores it too
        return None


def _displayed_size(im, path) -> tuple[int, int]:
    w, h = im.size
    orientation = _orientation(im)
    if orientation not in (5, 6, 7, 8):
        return w, h
    if im.format in _SWAP_BY_HEADER:
        return h, w
    shape = read_image(path).shape
    return shape[1], shape[0]


def image_size(path) -> tuple[int, int]:
    """The displayed ``(width, height)`` of an image file, from its header (EXIF orientation 5-8 swaps them).

    Only formats whose transposition Pillow handles differently (TIFF, WebP) are decoded to find out.

    Raises:
      BadImageError: naming ``path`` when the file cannot be opened as an image.
    """
    with _bad_image(path, "cannot open image"), Image.open(path) as im:
        return _displayed_size(im, path)


def verify_image(path) -> tuple[int, int]:
    """Check an image file cheaply (as a rule without decoding it) and return its displayed ``(width, height)``.

    The check is ultralytics' ``check_image`` (used by ``verify_image_label``): Pillow opens the header and
    runs ``Image.verify()`` (chunk checksums of PNG, structure of other formats); a JPEG that does not end with
    its end-of-image marker ``FF D9`` is then decoded in full, which fails if it is truncated (ultralytics
    re-saves such files in place; jaxdet never writes into a dataset). Corruption inside the compressed data
    of an otherwise complete file is found only when it is decoded, by :func:`read_image`.

    Raises:
      BadImageError: naming ``path`` when the file is missing, not an image, truncated or corrupt.
    """
    with _bad_image(path, "not a readable image"), Image.open(path) as im:
        im.verify()  # must come first: it needs the file as just opened; the header stays readable
        size, fmt = _displayed_size(im, path), im.format
    if fmt in ("JPEG", "MPO"):
        with open(path, "rb") as fh:
            fh.seek(-2, os.SEEK_END)
            complete = fh.read() == b"\xff\xd9"
        if not complete:
            read_image(path)
    return size
