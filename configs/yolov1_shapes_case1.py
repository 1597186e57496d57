"""YOLOv1 on synthetic shapes, Case 1: the IoU confidence target stays in the graph.

Identical to ``configs/yolov1_shapes.py`` except ``loss.iou_target="through"``; the same run is
``python -m train --config.loss.iou_target=through``.

Glossary: seed 000: the gradient of YOLOv1's IoU confidence target (Redmon et al., "You Only Look Once: Unified,
Real-Time Object Detection", CVPR 2016); Case 1: a target computed from the predictions keeps its gradient
(``"through"``); Case 2: its gradient is stopped (``"stop"``, what every public YOLO does).
"""

from configs import yolov1_shapes


def get_config():
    c = yolov1_shapes.get_config()
    c.name = "yolov1_shapes_case1"
    c.loss.iou_target = "through"
    return c
