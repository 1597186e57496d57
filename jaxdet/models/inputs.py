"""The models' image input: uint8 batches are scaled to ``[0, 1]`` on the device.

The loader's batches carry uint8 images (:mod:`jaxdet.data.records`), so the host moves a quarter of the bytes of
float32 images (a 16 x 640 x 640 batch: 19.7 MB instead of 78.6 MB). Every model calls :func:`unit_images` on
its input, inside the jitted train step, evaluation and predict alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet import _checks

__all__ = ["unit_images"]


def unit_images(images: jax.Array) -> jax.Array:
    """Images as floats in ``[0, 1]``.

    Args:
      images: ``[N, H, W, 3]``, uint8 (``0 .. 255``) or floating (already in ``[0, 1]``, returned as they are).

    Returns:
      float ``[N, H, W, 3]``: float32 ``images / 255`` for uint8 input, bit for bit the float32 batches the
      loader made before (and ultralytics' ``img.float() / 255``), the input itself otherwise.
    """
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        # A table of the 256 quotients, not ``x / 255``: XLA rewrites a division by a constant as a product with
        # its reciprocal, which differs in the last bit for 126 of the 256 values. As fast, measured on the CPU.
        return jnp.asarray(_UNIT)[images]
    return _checks.floating(images, "images", hint="Give uint8 pixels (0..255) or floats in [0, 1].")


#: ``v / 255`` in float32 for every uint8 ``v``, correctly rounded (as numpy and torch divide).
_UNIT = np.arange(256, dtype=np.float32) / np.float32(255)
