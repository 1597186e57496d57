"""train.loader_stats: the loader's own images/s and the loop's wait, as the loop logs them."""

from __future__ import annotations

import time

import grain
import numpy as np

from jaxdet.data import SyntheticShapes, make_loader
from train import data as data_lib
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
    grain_batches = data_lib.make_train_batches("grain", source, **kw)
    step_batches = data_lib.make_train_batches("step", source, **kw)
    for batches in (grain_batches, step_batches):
        batches.next()
        batches.next()
        out = batches.stats.take()
        assert out["loader_images_per_sec"] > 0 and out["data_wait_s"] >= 0
    # Timing the source and the augmentation changes no batch: the same stream as the plain jaxdet loader.
    plain = make_loader(source, batch_size=4, seed=0, augment=True, max_objects=6,
                        shard_options=grain.sharding.ShardOptions(0, 1))
    timed = data_lib.make_train_batches("grain", source, **kw)
    for _ in range(3):
        a, b = timed.next(), next(plain)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    for batches in (grain_batches, step_batches, timed):
        batches.close()
