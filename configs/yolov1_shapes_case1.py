"""YOLOv1 on synthetic shapes, Case 1: the IoU confidence target stays in the graph.

Identical to ``configs/yolov1_shapes.py`` except ``loss.iou_target="through"``; the same run is
``python -m train --config.loss.iou_target=through``.
"""

from configs import yolov1_shapes


def get_config():
    c = yolov1_shapes.get_config()
    c.name = "yolov1_shapes_case1"
    c.loss.iou_target = "through"
    return c
