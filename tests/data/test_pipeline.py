"""Augmentation consistency, padding/batching, and the grain loader (determinism, sharding, state)."""

import grain
import numpy as np
import pytest
import shapely

from jaxdet.data import (
    SyntheticShapes,
    canonical_polygon,
    collate,
    hflip,
    loader_length,
    make_augment,
    make_loader,
    pad_example,
    scale_jitter,
)

NO_SHARD = grain.sharding.NoSharding()


def _rect_example(h=40, w=60, rect=(12, 8, 36, 30)):
    """Black image with one white axis-aligned rectangle [x0, x1) x [y0, y1) in pixels."""
    x0, y0, x1, y1 = rect
    img = np.zeros((h, w, 3), np.uint8)
    img[y0:y1, x0:x1] = 255
    box = np.array([[x0 / w, y0 / h, x1 / w, y1 / h]], np.float32)
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float) / [w, h]
    return {
        "image": img,
        "boxes": box,
        "classes": np.array([2], np.int32),
        "polygons": canonical_polygon(corners, 8)[None],
        "image_id": np.int32(5),
    }


def _bright_extent(img):
    ys, xs = np.nonzero(img[..., 0] > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def test_hflip_twice_is_identity_and_matches_pixels():
    ds = SyntheticShapes("train", num_images=20, seed=1)
    for i in range(20):
        e = ds[i]
        f = hflip(e)
        ff = hflip(f)
        np.testing.assert_array_equal(ff["image"], e["image"])
        np.testing.assert_allclose(ff["boxes"], e["boxes"], atol=1e-7)
        np.testing.assert_allclose(ff["polygons"], e["polygons"], atol=1e-7)
        np.testing.assert_array_equal(f["image"], e["image"][:, ::-1])
        # Flipped polygon = mirrored outline (same set of points), canonical order.
        for p, q in zip(e["polygons"], f["polygons"]):
            mirrored = p.astype(np.float64) * [-1, 1] + [1, 0]
            assert shapely.Polygon(q).equals_exact(shapely.Polygon(mirrored), 1e-6) or shapely.Polygon(
                q
            ).normalize().equals_exact(shapely.Polygon(mirrored).normalize(), 1e-6)
            x, y = q[:, 0].astype(float), q[:, 1].astype(float)
            assert np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0
    e = _rect_example()
    np.testing.assert_allclose(_bright_extent(hflip(e)["image"]) / [60, 40, 60, 40], hflip(e)["boxes"][0], atol=1e-6)


@pytest.mark.parametrize("scale_range", [(0.5, 0.9), (1.1, 1.6), (0.75, 1.25)])
def test_scale_jitter_moves_pixels_and_targets_together(scale_range):
    rng = np.random.default_rng(0)
    for _ in range(15):
        e = _rect_example()
        out = scale_jitter(e, rng, scale_range=scale_range, fill=0)
        assert len(out["boxes"]) == 1
        box_px = out["boxes"][0] * [60, 40, 60, 40]
        # Bilinear edges: the >50% extent is within half a pixel (+ rounding) of the transformed box.
        np.testing.assert_allclose(_bright_extent(out["image"]), box_px, atol=1.0)
        poly = out["polygons"][0]
        np.testing.assert_allclose(
            [poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(), poly[:, 1].max()], out["boxes"][0], atol=1e-6
        )


def test_augment_keeps_boxes_enclosing_polygons_and_is_deterministic():
    ds = SyntheticShapes("train", num_images=40, seed=2)
    aug = make_augment(hflip_prob=0.5, scale_range=(0.6, 1.6))
    clipped_seen = 0
    for i in range(40):
        e = ds[i]
        a = aug(e, np.random.default_rng(i))
        b = aug(e, np.random.default_rng(i))
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        n = len(a["classes"])
        assert a["boxes"].shape == (n, 4) and a["polygons"].shape == (n, 8, 2) and a["image"].shape == (64, 64, 3)
        bx, p = a["boxes"], a["polygons"]
        assert np.all(bx >= 0) and np.all(bx <= 1) and np.all(bx[:, 2] > bx[:, 0]) and np.all(bx[:, 3] > bx[:, 1])
        assert np.all(p[..., 0] >= bx[:, None, 0] - 1e-6) and np.all(p[..., 0] <= bx[:, None, 2] + 1e-6)
        assert np.all(p[..., 1] >= bx[:, None, 1] - 1e-6) and np.all(p[..., 1] <= bx[:, None, 3] + 1e-6)
        clipped_seen += int(np.any(bx == 0) or np.any(bx == 1))
        for q in p:
            assert shapely.Polygon(q).exterior.is_ccw
    assert clipped_seen > 0  # the clipping path ran


def test_pad_and_collate():
    ds = SyntheticShapes("val", num_images=4, max_objects_per_image=4)
    exs = [ds[i] for i in range(4)]
    batch = collate(exs, max_objects=6)
    assert batch["image"].shape == (4, 64, 64, 3) and batch["image"].dtype == np.uint8  # scaled on the device
    np.testing.assert_array_equal(batch["image"], np.stack([e["image"] for e in exs]))
    assert batch["boxes"].shape == (4, 6, 4) and batch["polygons"].shape == (4, 6, 8, 2)
    assert batch["classes"].dtype == np.int32 and batch["valid"].dtype == bool
    assert batch["image_id"].dtype == np.int32 and batch["image_id"].tolist() == [0, 1, 2, 3]
    for i, e in enumerate(exs):
        n = len(e["classes"])
        assert batch["valid"][i].tolist() == [True] * n + [False] * (6 - n)
        np.testing.assert_array_equal(batch["boxes"][i, :n], e["boxes"])
        assert not batch["boxes"][i, n:].any() and not batch["polygons"][i, n:].any()
    np.testing.assert_array_equal(batch["image"][0], exs[0]["image"])
    big = max(exs, key=lambda e: len(e["classes"]))
    with pytest.raises(ValueError, match="max_objects"):
        pad_example(big, len(big["classes"]) - 1)


def _take(it, n):
    return [next(it) for _ in range(n)]


def _equal(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a)


def test_loader_shapes_determinism_and_epochs():
    ds = SyntheticShapes("train", num_images=24, seed=0)
    kw = dict(batch_size=8, augment=True, shard_options=NO_SHARD, max_objects=6, num_threads=0)
    a = _take(make_loader(ds, seed=5, num_epochs=None, **kw), 4)
    b = _take(make_loader(ds, seed=5, num_epochs=None, **kw), 4)
    c = _take(make_loader(ds, seed=6, num_epochs=None, **kw), 4)
    assert all(_equal(x, y) for x, y in zip(a, b))
    assert not _equal(a[0], c[0])
    shapes = {k: (v.shape, v.dtype) for k, v in a[0].items()}
    assert shapes == {
        "image": ((8, 64, 64, 3), np.uint8),
        "boxes": ((8, 6, 4), np.float32),
        "classes": ((8, 6), np.int32),
        "valid": ((8, 6), np.bool_),
        "polygons": ((8, 6, 8, 2), np.float32),
        "image_id": ((8,), np.int32),
        "orig_size": ((8, 2), np.int32),
        "ratio_pad": ((8, 4), np.float32),
        "dropped_boxes": ((8,), np.int32),
    }
    # Finite epochs: every epoch is a permutation of the dataset, reshuffled between epochs.
    batches = list(make_loader(ds, seed=5, num_epochs=2, **kw))
    assert len(batches) == loader_length(24, batch_size=8, num_epochs=2) == 6
    ids = np.concatenate([x["image_id"] for x in batches])
    assert sorted(ids[:24]) == list(range(24)) and sorted(ids[24:]) == list(range(24))
    assert not np.array_equal(ids[:24], ids[24:]) and not np.array_equal(ids[:24], np.arange(24))
    # No shuffle, no augment: the source itself, in order.
    plain = next(make_loader(ds, batch_size=8, shuffle=False, shard_options=NO_SHARD, max_objects=6))
    np.testing.assert_array_equal(plain["image_id"], np.arange(8))
    np.testing.assert_array_equal(plain["image"][3], ds[3]["image"])


def test_eval_loader_pads_final_batch():
    ds = SyntheticShapes("val", num_images=10)
    batches = list(
        make_loader(ds, batch_size=4, shuffle=False, num_epochs=1, drop_remainder=False, shard_options=NO_SHARD)
    )
    assert len(batches) == 3 == loader_length(10, batch_size=4, drop_remainder=False)
    last = batches[-1]
    assert last["image_id"].tolist() == [8, 9, -1, -1]
    assert not last["valid"][2:].any() and not last["image"][2:].any()
    assert len(list(make_loader(ds, batch_size=4, shuffle=False, num_epochs=1, shard_options=NO_SHARD))) == 2


def test_sharding_splits_each_global_batch_by_process():
    ds = SyntheticShapes("train", num_images=30, seed=0)
    kw = dict(batch_size=6, seed=3, augment=True, num_epochs=None, num_threads=0)
    whole = _take(make_loader(ds, shard_options=NO_SHARD, **kw), 3)
    parts = [_take(make_loader(ds, shard_options=grain.sharding.ShardOptions(p, 2), **kw), 3) for p in (0, 1)]
    for g, p0, p1 in zip(whole, *parts):
        assert p0["image"].shape[0] == 3
        for key in g:
            np.testing.assert_array_equal(np.concatenate([p0[key], p1[key]]), g[key])
    assert not set(parts[0][0]["image_id"]) & set(parts[1][0]["image_id"])
    # Default sharding is by JAX process (1 process here).
    default = next(make_loader(ds, **kw))
    assert _equal(default, whole[0])
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(ds, batch_size=5, shard_options=grain.sharding.ShardOptions(0, 2))


@pytest.mark.parametrize("num_threads", [0, 2])
def test_iterator_state_restore_gives_next_batch(num_threads):
    ds = SyntheticShapes("train", num_images=16, seed=0)
    kw = dict(batch_size=4, seed=1, augment=True, num_epochs=None, shard_options=NO_SHARD, num_threads=num_threads)
    it = make_loader(ds, **kw)
    _take(it, 5)  # crosses an epoch boundary
    state = it.get_state()
    want = _take(it, 2)
    fresh = make_loader(ds, **kw)
    fresh.set_state(state)
    got = _take(fresh, 2)
    assert all(_equal(w, g) for w, g in zip(want, got))
    it.set_state(state)  # rewinding the same iterator works too
    assert _equal(next(it), want[0])


def test_iterator_state_through_orbax(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    ds = SyntheticShapes("train", num_images=16, seed=0)
    kw = dict(batch_size=4, seed=1, augment=True, num_epochs=None, shard_options=NO_SHARD, num_threads=0)
    it = make_loader(ds, **kw)
    _take(it, 3)
    mngr = ocp.CheckpointManager(tmp_path / "ckpt")
    mngr.save(3, args=ocp.args.Composite(data=ocp.args.JsonSave(it.get_state())))
    mngr.wait_until_finished()
    want = next(it)
    restored = mngr.restore(3, args=ocp.args.Composite(data=ocp.args.JsonRestore()))
    fresh = make_loader(ds, **kw)
    fresh.set_state(restored["data"])
    assert _equal(next(fresh), want)
    mngr.close()
