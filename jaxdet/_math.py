"""Numerics shared by the library's layers below the losses: one copy, so every caller rounds and differentiates
them the same way. (The loss-only helpers, the ``reduction`` keyword and the label log-probability, stay in
:mod:`jaxdet.losses._common`.)"""

import jax
import jax.numpy as jnp


def safe_pow(base: jax.Array, exponent: float) -> jax.Array:
    """``base ** exponent`` with finite values and gradients for every finite ``base`` (a Python ``exponent``).

    - ``exponent == 0``: 1 everywhere (:math:`0^0 = 1`).
    - a positive whole exponent ``n`` (focal's γ = β = 2): ``lax.integer_pow``, exact, cheaper than
      ``exp(n log base)``, with the exact derivative :math:`n\\,\\mathrm{base}^{n-1}`, finite everywhere.
    - any other exponent: :math:`\\mathrm{base}^e` where ``base > 0`` and 0 where ``base <= 0``, through a double
      ``where``, so the gradient there is 0 instead of ``inf * 0`` or NaN (a fractional power of a negative
      number).
    """
    if exponent == 0.0:
        return jnp.ones_like(base)
    if float(exponent).is_integer() and exponent > 0:
        return base ** int(exponent)
    positive = base > 0
    safe = jnp.where(positive, base, jnp.ones_like(base))
    return jnp.where(positive, safe**exponent, jnp.zeros_like(base))
