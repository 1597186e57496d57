"""YOLOv8n on COCO 2017 at 640 px with ultralytics' recipe: the real thing, for GPUs and TPU pods.

Derived from ``configs/yolov8n_shapes.py`` (model, loss, recipe, ultralytics-style validation); this config
changes the data to a COCO folder letterboxed to 640 px, ultralytics' augmentation (4-image mosaic, affine with
scale 0.5 and translate 0.1, HSV, flip; mosaic off for the last 10 of 100 epochs) and the schedule to 100 epochs
of train2017 (118,287 images) at a global batch of 64: 184,823 batches, 3 warm-up epochs, EMA weights
evaluated on all 5,000 val2017 images once an epoch.

One host (its local GPUs/TPU cores form the data axis)::

    python -m train --config=configs/yolov8n_coco.py --workdir runs/yolov8n_coco \\
      --config.data.train_path=/data/coco/annotations/instances_train2017.json \\
      --config.data.train_images=/data/coco/train2017 \\
      --config.data.val_path=/data/coco/annotations/instances_val2017.json \\
      --config.data.val_images=/data/coco/val2017

A multi-host pod: the same command on every host, with ``JAX_COORDINATOR_ADDRESS=host0:1234
JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i`` in each host's environment (on Cloud TPU ``jax.distributed`` finds them
itself) and ``--workdir`` on storage every host sees; raise ``--config.train.batch_size`` with the device count
(it is the global batch; ``train.nbs`` stays 64, so above 64 every batch is one update) and give the loader
worker processes, ``--config.data.num_workers=8``, so decoding and the mosaic keep up with the accelerators.
"""

from configs import yolov8n_shapes

#: COCO 2017 train images and the epochs of ultralytics' default schedule.
TRAIN_IMAGES = 118_287
EPOCHS = 100


def get_config():
    c = yolov8n_shapes.get_config()
    c.name = "yolov8n_coco"
    c.model.num_classes = 80  # replaced by the data's class count (train.data.prepare_data)

    c.data.name = "coco"  # paths on the command line (above)
    c.data.image_size = 640
    c.data.resize = "letterbox"
    c.data.on_bad_image = "error"
    c.data.invalid_boxes = "drop"  # COCO train2017 has zero-area boxes; they are counted in data_report.json
    c.data.augment = "yolo"
    # data.max_objects stays "auto": 4 x the densest image's objects (a zoomed-out mosaic shows 4 images).
    c.data.num_workers = 8

    c.train.batch_size = 64  # global batch
    c.train.nbs = 64  # ultralytics' nominal batch (configs/yolov8n_shapes.py uses 16 for its CPU budget)
    batches_per_epoch = TRAIN_IMAGES // 64
    c.train.steps = EPOCHS * batches_per_epoch
    c.data.close_mosaic = 10 * batches_per_epoch  # ultralytics' close_mosaic=10 epochs
    c.train.warmup_steps = 3 * batches_per_epoch  # warmup_epochs=3
    c.train.log_every = 100
    c.train.eval_every = batches_per_epoch
    c.train.checkpoint_every = 1000
    c.train.progress_bar = False  # multi-host logs; the log line every train.log_every steps

    c.eval.num_images = 5000  # all of val2017
    c.eval.batch_size = 64
    c.eval.num_plot_images = 16
    return c
