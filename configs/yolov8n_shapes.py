"""YOLOv8n (ultralytics yolov8.yaml, scale n) on the embedded synthetic shapes, small enough for a CPU.

64 px images (a multiple of 32: levels 8×8, 4×4, 2×2), batch 16. The BatchNorm statistics are trained in
the model state and used for evaluation. ``--config.model.scale=s`` for YOLOv8s,
``--config.model.dtype=bfloat16`` for bf16 activations on GPU/TPU.

Run with ``python -m train --config=configs/yolov8n_shapes.py``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "yolov8n_shapes"
    c.seed = 0

    # Shared between sections: changing one changes the other.
    image_size = ml_collections.FieldReference(64)
    num_vertices = ml_collections.FieldReference(8)

    c.model = ml_collections.ConfigDict()
    c.model.head = "yolov8"
    c.model.image_size = image_size
    c.model.num_classes = 5  # the synthetic shapes' classes; for a folder, the data's (train.data.prepare_data)
    c.model.scale = "n"  # yolov8.yaml scale: n | s | m | l | x
    c.model.reg_max = 16  # DFL bins per box side
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (parameters stay float32)

    c.data = ml_collections.ConfigDict()
    c.data.name = "shapes"  # "shapes" (embedded synthetic) | "coco" | "voc" | "yolo" (your folder; train/README.md)
    # Annotated folders (data.name = coco | voc | yolo; ignored for shapes). "" = the format's default.
    c.data.train_path = ""  # coco: annotation JSON; voc: dir of *.xml or ImageSets .txt; yolo: labels dir
    c.data.train_images = ""  # image folder (coco: JSON's dir; voc: <xml dir>/../JPEGImages; yolo: images dir)
    c.data.val_path = ""  # the same for the validation split (required: evaluation runs on it)
    c.data.val_images = ""
    c.data.class_names = ()  # () = from the data; the run's model.num_classes is len(class_names)
    c.data.image_size = image_size
    c.data.num_vertices = num_vertices
    c.data.loader = "grain"  # "grain" (jaxdet.data.make_loader) | "step"
    c.data.max_objects = 6  # ground-truth slots per image (padding)
    c.data.min_objects = 1
    c.data.max_objects_per_image = 4
    c.data.train_size = 4096
    c.data.val_size = 256
    c.data.seed = 0
    c.data.augment = True  # scale jitter + horizontal flip
    c.data.hflip_prob = 0.5
    c.data.scale_range = (0.75, 1.25)

    c.loss = ml_collections.ConfigDict()  # jaxdet.losses.yolov8.yolov8_loss (ultralytics' defaults)
    c.loss.box = 7.5  # gains
    c.loss.cls = 0.5
    c.loss.dfl = 1.5
    c.loss.score_target = "stop"  # Case 2 (ultralytics' no_grad assigner); "through" = Case 1
    c.loss.topk = 10  # task-aligned assignment candidates per object

    c.train = ml_collections.ConfigDict()
    c.train.steps = 300
    c.train.batch_size = 16  # global batch, divisible by the data-axis size
    c.train.learning_rate = 1e-3
    c.train.warmup_steps = 30
    c.train.end_lr_factor = 0.02  # final LR = learning_rate * end_lr_factor (cosine)
    c.train.weight_decay = 5e-4
    c.train.grad_clip = 10.0  # global-norm clip; 0 disables
    c.train.max_consecutive_nonfinite = 10  # non-finite steps are skipped; this many in a row stop the run
    c.train.log_every = 25
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    c.train.keep_checkpoints = 3
    c.train.progress_bar = True

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 64
    c.eval.num_images = 256  # validation images used for mAP (<= data.val_size)
    c.eval.score_threshold = 0.01
    c.eval.iou_threshold = 0.5
    c.eval.max_detections = 32
    c.eval.num_plot_images = 16
    c.eval.plot_score_threshold = 0.3  # detections drawn in plots/val_predictions.png

    c.mesh = ml_collections.ConfigDict()
    c.mesh.shape = (-1,)  # -1: all devices; e.g. (-1, 2) with axes ("data", "model")
    c.mesh.axes = ("data",)
    return c
