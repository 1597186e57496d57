"""The optional decode fields of ``eval`` (``multi_label``, ``pre_nms_top_k``): passed to heads that take them,
refused with the field's name for heads that do not."""

from __future__ import annotations

import pytest

from configs import yolov1_shapes, yolov8n_shapes
from train.task import decode_options, make_head
from train.validate import ConfigError, validate_config


def test_yolov8_config_validates_as_ultralytics():

    c = yolov8n_shapes.get_config()
    assert (c.eval.score_threshold, c.eval.iou_threshold, c.eval.max_detections) == (0.001, 0.7, 300)
    assert decode_options(c, make_head(c)) == {"multi_label": True, "pre_nms_top_k": 30000}


def test_a_head_without_the_option_is_refused(tmp_path):

    c = yolov1_shapes.get_config()
    assert decode_options(c, make_head(c)) == {}  # the default config passes nothing new
    c.eval.multi_label = True
    with pytest.raises(ConfigError, match=r"eval.multi_label=True: the 'yolov1' head's decode has no multi_label"):
        validate_config(c, str(tmp_path))
