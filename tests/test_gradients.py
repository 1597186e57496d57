"""Tests of jaxdet.gradients: gradient paths, per-term gradients from one VJP, norms and cosines."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet import gradients


def test_route_target_cases():
    """Case 1 ("through") keeps d(target)/dx; Case 2 ("stop") zeroes it, with the same value."""
    x = jnp.array(1.5)
    through = jax.value_and_grad(lambda v: gradients.route_target(v**2, "through"))(x)
    stop = jax.value_and_grad(lambda v: gradients.route_target(v**2, "stop"))(x)
    assert through[0] == stop[0] == 2.25
    assert through[1] == 3.0
    assert stop[1] == 0.0


def test_route_target_textbook_derivatives():
    """L = (C − IoU(w))²: Case 1 gives 2(C−IoU)(∂C/∂w − ∂IoU/∂w), Case 2 gives 2(C−IoU)∂C/∂w."""
    conf = jnp.tanh

    def iou(w):
        return 1 / (1 + w**2)

    w = jnp.array(0.7)
    c, i = conf(w), iou(w)
    dc, di = jax.grad(conf)(w), jax.grad(iou)(w)
    for path, expected in (("through", 2 * (c - i) * (dc - di)), ("stop", 2 * (c - i) * dc)):
        got = jax.grad(lambda v: (conf(v) - gradients.route_target(iou(v), path)) ** 2)(w)
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_route_target_rejects_unknown_path():
    with pytest.raises(ValueError, match=r"iou_target must be one of \('stop', 'through'\)"):
        gradients.route_target(jnp.ones(()), "detach", argname="iou_target")


def _terms(preds, target):
    return {
        "l2": jnp.sum((preds["a"] - target) ** 2),
        "l1": jnp.sum(jnp.abs(preds["a"] - target)) + jnp.sum(preds["b"] ** 3),
        "zero": jnp.sum(preds["b"]) * 0.0,
    }


def test_term_gradients_match_separate_grads():
    rng = np.random.default_rng(0)
    preds = {"a": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.asarray(rng.normal(size=(2,)))}
    target = jnp.asarray(rng.normal(size=(3, 4)))
    terms, grads = gradients.term_gradients(_terms, preds, target)
    for name in ("l2", "l1", "zero"):
        expected = jax.grad(lambda p: _terms(p, target)[name])(preds)
        np.testing.assert_allclose(terms[name], _terms(preds, target)[name], rtol=1e-6)
        for key in preds:
            np.testing.assert_allclose(grads[name][key], expected[key], rtol=1e-6, atol=1e-7)
    total = jax.grad(lambda p: sum(_terms(p, target).values()))(preds)
    np.testing.assert_allclose(sum(g["a"] for g in grads.values()), total["a"], rtol=1e-6)


def test_term_gradients_runs_the_forward_pass_once():
    calls = []

    def counted(preds, target):
        calls.append(1)
        return _terms(preds, target)

    preds = {"a": jnp.ones((3, 4)), "b": jnp.ones((2,))}
    gradients.term_gradients(counted, preds, jnp.zeros((3, 4)))
    assert len(calls) == 1


def test_term_gradients_under_jit():
    preds = {"a": jnp.ones((3, 4)), "b": jnp.ones((2,))}
    target = jnp.zeros((3, 4))
    eager = gradients.term_gradients(_terms, preds, target)[1]
    jitted = jax.jit(lambda p, t: gradients.term_gradients(_terms, p, t))(preds, target)[1]
    np.testing.assert_allclose(jitted["l1"]["b"], eager["l1"]["b"])


def test_term_gradients_rejects_non_scalar_terms():
    with pytest.raises(ValueError, match="scalar terms"):
        gradients.term_gradients(lambda p: {"v": p * 2}, jnp.ones(3))


def test_norms_and_cosines():
    grads = {"a": {"x": jnp.array([3.0, 0.0])}, "b": {"x": jnp.array([0.0, 2.0])}, "c": {"x": jnp.array([-6.0, 0.0])}}
    norms = gradients.gradient_norms(grads)
    np.testing.assert_allclose([norms["a"], norms["b"], norms["c"]], [3.0, 2.0, 6.0])
    cos = gradients.cosine_matrix(grads)
    np.testing.assert_allclose(cos[("a", "b")], 0.0)
    np.testing.assert_allclose(cos[("a", "c")], -1.0)
    assert set(cos) == {("a", "b"), ("a", "c"), ("b", "c")}


def test_cosine_of_zero_gradient_is_finite():
    zero = jnp.zeros(4)
    value, grad = jax.value_and_grad(lambda g: gradients.gradient_cosine(g, jnp.ones(4)))(zero)
    assert value == 0.0
    assert np.isfinite(grad).all()
