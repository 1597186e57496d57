"""DetectionSource's decoded-image caches: the same examples and batches with any cache, each image decoded once,
one RAM cache shared by worker processes, clear errors; YoloAugment's mosaic partners from a stream window."""

from __future__ import annotations

import grain
import numpy as np
import pytest
from PIL import Image

from jaxdet.data import DetectionSource, make_loader, read_yolo
from jaxdet.data import image_cache as image_cache_lib
from jaxdet.data.errors import BadImageError
from jaxdet.data.yolo_augment import YoloAugment, YoloRecipe
from train import batches as batches_lib

NO_SHARD = grain.sharding.NoSharding()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A YOLO folder of 12 photos-like images of a few sizes, two boxes each."""
    root = tmp_path_factory.mktemp("yolo")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for i in range(12):
        h, w = (40, 60) if i % 3 else (72, 50)
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy + 30 * i) % 256], -1).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"im{i:02d}.png")
        boxes = [(0.3 + 0.02 * i, 0.4, 0.2, 0.3), (0.7, 0.6, 0.25, 0.2 + 0.01 * i)]
        lines = "".join(f"{i % 2} {cx} {cy} {bw} {bh}\n" for cx, cy, bw, bh in boxes)
        (root / "labels" / f"im{i:02d}.txt").write_text(lines)
    return root


@pytest.fixture(scope="module")
def records(folder):
    return read_yolo(folder / "images", class_names=("a", "b"), cache=False)


def _counting(records):
    """The records with their image decodes (``load_image`` calls) counted."""
    counter = {"n": 0}

    class Rec:
        def __init__(self, rec):
            self._rec = rec

        def __getattr__(self, name):
            return getattr(self._rec, name)

        def load_image(self):
            counter["n"] += 1
            return self._rec.load_image()

    return [Rec(r) for r in records], counter


def _assert_same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_every_cache_gives_the_same_examples_and_decodes_once(records, tmp_path):
    plain = DetectionSource(records, image_size=48, buffer=0)
    for cache in ("none", "ram", "disk"):
        recs, count = _counting(records)
        src = DetectionSource(recs, image_size=48, cache=cache, cache_dir=tmp_path / "npy")
        for _ in range(3):
            for i in range(len(src)):
                _assert_same(src[i], plain[i])
        assert count["n"] == len(src)  # once each (cache="none": the buffer of 64 holds all 12)
    # disk: a new source over the same folder decodes nothing
    recs, count = _counting(records)
    again = DetectionSource(recs, image_size=48, cache="disk", cache_dir=tmp_path / "npy", buffer=0)
    _assert_same(again[3], plain[3])
    assert count["n"] == 0
    # ... but another training size is decoded afresh
    recs, count = _counting(records)
    DetectionSource(recs, image_size=32, cache="disk", cache_dir=tmp_path / "npy")[3]
    assert count["n"] == 1


def test_without_cache_only_the_recent_images_are_kept(records):
    recs, count = _counting(records)
    src = DetectionSource(recs, image_size=48, buffer=4)
    for i in (0, 1, 2, 3, 0, 1):
        src[i]
    assert count["n"] == 4
    for i in (4, 5, 6, 7, 0):  # 0 was evicted
        src[i]
    assert count["n"] == 9


def test_polygons_false_carries_none(records):
    ex = DetectionSource(records, image_size=48, polygons=False)[0]
    assert ex["polygons"].shape == (len(ex["boxes"]), 0, 2)


def test_ram_cache_is_shared_with_worker_processes_and_batches_do_not_change(records):
    aug_kw = dict(recipe=YoloRecipe(), partner_window=4)
    kw = dict(batch_size=4, seed=3, max_objects=10, shard_options=NO_SHARD, num_threads=0)
    plain = DetectionSource(records, image_size=64)
    ref = make_loader(plain, augment=YoloAugment(plain, **aug_kw), **kw)
    ref = [next(ref) for _ in range(4)]
    ram = DetectionSource(records, image_size=64, cache="ram", buffer=0)
    it = make_loader(ram, augment=YoloAugment(ram, **aug_kw), num_workers=2, **kw)
    for a in ref:
        _assert_same(a, next(it))
    # The workers decoded into the parent's shared array: it holds the images the batches used.
    assert ram._store.filled > 0


def test_ram_cache_that_does_not_fit_says_how_much_it_needs(records, monkeypatch):
    monkeypatch.setattr(image_cache_lib, "available_memory", lambda: 100_000)
    with pytest.raises(MemoryError, match=r"needs 0\.00 GiB.*only 0\.00 GiB.*available.*cache='disk'"):
        DetectionSource(records, image_size=64, cache="ram")


def test_unreadable_image_is_named_through_every_cache(records, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    rec = records[0]
    bad = [type(rec)(**{**rec.__dict__, "image_path": str(broken)})]
    for cache in ("none", "ram", "disk"):
        src = DetectionSource(bad, image_size=48, cache=cache, cache_dir=tmp_path / "npy")
        with pytest.raises(BadImageError, match="broken.png"):
            src[0]
    with pytest.raises(ValueError, match="cache_dir"):
        DetectionSource(records, image_size=48, cache="disk")


def test_window_partners_come_from_the_stream_window_and_resume_and_shard(records):
    src = DetectionSource(records, image_size=64)
    aug = YoloAugment(src, YoloRecipe(close_mosaic_at=3), partner_window=4)
    assert aug.uses_stream
    asked = []

    def stream(g):
        asked.append(g)
        return src[g % len(src)]

    aug(src[0], np.random.default_rng(0), step=0, position=9, stream=stream)
    assert len(asked) == 3 and all(8 <= g < 12 for g in asked)
    with pytest.raises(ValueError, match="position, stream"):
        aug(src[0], np.random.default_rng(0), step=0)
    kw = dict(batch_size=4, seed=1, augment=aug, max_objects=10, shard_options=NO_SHARD, num_threads=0)
    it = make_loader(src, **kw)
    next(it)
    state = it.get_state()
    rest = [next(it) for _ in range(3)]
    again = make_loader(src, **kw)
    again.set_state(state)
    for a in rest:
        _assert_same(a, next(again))
    glob = make_loader(src, **kw)
    halves = [make_loader(src, **dict(kw, shard_options=grain.sharding.ShardOptions(i, 2))) for i in range(2)]
    for _ in range(2):
        g, parts = next(glob), [next(h) for h in halves]
        for k in g:
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), g[k], err_msg=k)


def test_train_loader_with_window_partners_and_worker_processes(records):
    """python -m train's grain loader (timed augmentation) passes the stream, and runs with worker processes."""

    src = DetectionSource(records, image_size=64, cache="ram")
    aug = YoloAugment(src, YoloRecipe(), partner_window=4)
    kw = dict(global_batch_size=4, seed=0, rows=np.arange(4), augment=aug, max_objects=10, num_threads=0)
    ref = batches_lib.make_train_batches("grain", src, **kw)
    ref = [ref.next() for _ in range(3)]
    with_workers = batches_lib.make_train_batches("grain", src, num_workers=2, **kw)
    step = batches_lib.make_train_batches("step", src, **kw)
    try:
        for a in ref:
            _assert_same(a, with_workers.next())
            assert sorted(step.next()) == sorted(a)
    finally:
        step.close()


def test_a_second_ram_cache_counts_what_the_first_has_still_to_fill(records, monkeypatch):
    one = len(records) * 64 * 64 * 3
    monkeypatch.setattr(image_cache_lib, "available_memory", lambda: int(one * 1.6))  # one fits in 80 %, two not
    first = DetectionSource(records, image_size=64, cache="ram")
    with pytest.raises(MemoryError, match=r"still to fill of this process's other RAM caches"):
        DetectionSource(records, image_size=64, cache="ram")
    first.fill_cache()  # now in memory: no longer promised, and the (patched) available memory is what is left
    assert first._store.unfilled_bytes == 0
    DetectionSource(records, image_size=64, cache="ram")
