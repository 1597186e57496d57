"""The dense-scene data, recipe and evaluation shared by ``configs/yolov8n_dense.py`` and ``configs/yolov1_dense.py``
(not a config itself: :func:`apply` edits one in place).

``data.name="dense_shapes"`` is a built-in synthetic split (``jaxdet.data.synthetic.DENSE_SHAPES``): 50-300 shapes per
256 px image, 2.5-6 % of the image side (6-15 px), 1 px apart. The generated images are cached in memory like the
shapes split (``data.train_size`` x 192 KiB).
"""


def apply(c):
    """Switches config ``c`` to the dense split, ultralytics' augmentation and a 300-detection evaluation."""
    c.data.name = "dense_shapes"
    c.data.image_size = 256
    # data.max_objects stays "auto": 1,216 slots (a mosaic can show 4 x 300 objects, rounded up to a multiple of 32).
    c.data.train_size = 1024
    c.data.val_size = 128
    c.data.augment = "yolo"
    c.eval.num_images = 128
    c.eval.max_detections = 300
    c.eval.batch_size = 16
    c.eval.num_plot_images = 4
    return c
