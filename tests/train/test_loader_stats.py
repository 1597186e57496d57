"""train.loader_stats: the loader's own images/s and the loop's wait, as the loop logs them."""

from __future__ import annotations

import time

import grain
import numpy as np

from jaxdet.data import SyntheticShapes, make_loader
from train import batches as batches_lib
from train.loader_stats import LoaderStats


def test_counters_rates_and_reset():
    stats = LoaderStats(threads=2)
    assert stats.take() == {"data_wait_s": 0.0}  # nothing produced: no rate
    slow = stats.timed(lambda x: time.sleep(0.01) or x)
    assert [slow(i) for i in range(5)] == list(range(5))
    stats.waited(0.25)
    out = stats.take()
    assert out["data_wait_s"] == 0.25
    # 5 images in >= 50 ms of one thread's time, two threads: at most 2 * 5 / 0.05 = 200 images/s.
    assert 0 < out["loader_images_per_sec"] <= 200
    assert stats.take() == {"data_wait_s": 0.0}


def test_both_batchers_report_and_keep_their_batches():
    source = SyntheticShapes("train", num_images=16, image_size=32)
    kw = dict(global_batch_size=4, seed=0, rows=np.arange(4), augment=True, max_objects=6)
    grain_batches = batches_lib.make_train_batches("grain", source, **kw)
    step_batches = batches_lib.make_train_batches("step", source, **kw)
    for batches in (grain_batches, step_batches):
        batches.next()
        batches.next()
        out = batches.stats.take()
        assert out["loader_images_per_sec"] > 0 and out["data_wait_s"] >= 0
    # Timing the source and the augmentation changes no batch: the same stream as the plain jaxdet loader.
    plain = make_loader(source, batch_size=4, seed=0, augment=True, max_objects=6,
                        shard_options=grain.sharding.ShardOptions(0, 1))
    timed = batches_lib.make_train_batches("grain", source, **kw)
    for _ in range(3):
        a, b = timed.next(), next(plain)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    for batches in (grain_batches, step_batches, timed):
        batches.close()


def test_the_cache_filler_fills_a_caching_source_beside_the_loader_without_changing_a_batch():
    kw = dict(global_batch_size=4, seed=0, rows=np.arange(4), augment=True, max_objects=6)
    cached = SyntheticShapes("train", num_images=24, image_size=32, cache=True)
    uncached = SyntheticShapes("train", num_images=24, image_size=32, cache=False)
    start = batches_lib.CacheFiller.start
    assert start(uncached, examples_to_read=100) is None  # nothing to fill
    assert start(cached, examples_to_read=23) is None  # the run would not read every example
    assert start(cached, examples_to_read=24, num_workers=2) is None  # each worker has its own copy
    filler = start(cached, examples_to_read=24)
    batches = batches_lib.make_train_batches("grain", cached, **kw)
    plain = batches_lib.make_train_batches("grain", uncached, **kw)
    for _ in range(3):
        a, b = batches.next(), plain.next()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    filler._thread.join(timeout=60)
    assert not filler._thread.is_alive() and cached.fill_cache() == 0  # the whole split was filled
    filler.stop()
    batches.close()
    plain.close()
