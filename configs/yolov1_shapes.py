"""YOLOv1 grid head on the embedded synthetic shapes dataset (Case 2); the other configs start from this one.

Case 2 (``loss.iou_target="stop"``) is what darknet and every public YOLO port do: the IoU confidence
target is a constant, so box coordinates get no gradient from the confidence term. For Case 1 use
``configs/yolov1_shapes_case1.py`` or the override ``--config.loss.iou_target=through``.

Run with ``python -m train --config configs/yolov1_shapes.py`` (the default config is ``configs/yolov8n_shapes.py``).

Glossary: seed 000: the gradient of YOLOv1's IoU confidence target (Redmon et al., "You Only Look Once: Unified,
Real-Time Object Detection", CVPR 2016); Case 1: a target computed from the predictions keeps its gradient
(``"through"``); Case 2: its gradient is stopped (``"stop"``, what every public YOLO does).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.name = "yolov1_shapes"
    c.seed = 0
    # JAX's persistent compilation cache ($JAXDET_CACHE_DIR/xla, else ~/.cache/jaxdet/xla; train/compile_cache.py):
    # a config's train step compiles once per machine. False: compile every run.
    c.compile_cache = True

    # Shared between sections: changing one changes the other.
    image_size = ml_collections.FieldReference(64)
    num_vertices = ml_collections.FieldReference(8)
    steps = ml_collections.FieldReference(1000)

    c.model = ml_collections.ConfigDict()
    c.model.head = "yolov1"  # "yolov1" | "polygon"
    c.model.image_size = image_size
    c.model.num_classes = 5  # the synthetic shapes' classes; for a folder, the data's (train.data.prepare_data)
    c.model.grid_size = 8  # S
    c.model.num_boxes = 2  # B (yolov1 head)
    c.model.num_vertices = num_vertices  # K (polygon head)
    c.model.widths = (16, 32, 64)  # channels of each stride-2 stage (output stride 2**len(widths))
    c.model.depths = (0, 1, 1)  # extra stride-1 conv blocks per stage
    c.model.head_width = 64
    c.model.norm = "group"  # GroupNorm: no batch statistics
    c.model.groups = 8

    c.data = ml_collections.ConfigDict()
    c.data.name = "shapes"  # "shapes" | "dense_shapes" (embedded synthetic) | "coco" | "voc" | "yolo" (your folder)
    # Annotated folders (data.name = coco | voc | yolo; ignored for shapes). "" = the format's default.
    c.data.train_path = ""  # coco: annotation JSON; voc: dir of *.xml or ImageSets .txt; yolo: labels dir
    c.data.train_images = ""  # image folder (coco: JSON's dir; voc: <xml dir>/../JPEGImages; yolo: images dir)
    c.data.val_path = ""  # the same for the validation split (required: evaluation runs on it)
    c.data.val_images = ""
    c.data.yaml = ""  # yolo: an ultralytics dataset file (path, train, val, names) instead of the four paths and names
    c.data.class_names = ()  # () = from the data; the run's model.num_classes is len(class_names)
    c.data.image_size = image_size
    c.data.resize = "letterbox"  # folders: "letterbox" (keep the aspect ratio, grey 114 padding) | "stretch"
    c.data.cache = "none"  # folders: decoded images kept "none" (recent ones) | "ram" (all, shared) | "disk" (.npy)
    c.data.cache_dir = ""  # cache="disk": the folder ("" = <workdir>/image_cache)
    c.data.mosaic_window = 16  # folders, yolo recipe: mosaic partners from 16 stream positions (0: the whole split)
    # Folders: every image file is checked when the annotations are read (header, Image.verify, JPEG end).
    c.data.on_bad_image = "error"  # unreadable/corrupt image: "error" (names the files) | "skip" (counted, listed)
    c.data.invalid_boxes = "error"  # zero-area / out-of-image object: "error" (file + record) | "drop" (counted)
    c.data.label_cache = True  # COCO/YOLO: reuse the parsed labels and image checks of unchanged files | False
    c.data.label_cache_dir = ""  # where: "" = $JAXDET_CACHE_DIR, $XDG_CACHE_HOME/jaxdet or ~/.cache/jaxdet
    c.data.num_vertices = num_vertices
    c.data.loader = "grain"  # "grain" (jaxdet.data.make_loader) | "step"
    c.data.num_threads = 2  # grain reader threads (reading/decoding + augmentation)
    c.data.prefetch = 8  # batches the grain loader prepares ahead of the step
    c.data.num_workers = 0  # grain worker processes building batches (0: none; same batches for any number)
    # Ground-truth slots per image (padding): "auto" = the most objects an image (or a 4-image mosaic) can hold,
    # rounded up to a multiple of 32 (train/data.py, object_slots); an int is checked against that bound.
    c.data.max_objects = "auto"
    c.data.min_objects = 1  # shapes only (dense_shapes: 50..300, jaxdet.data.synthetic.DENSE_SHAPES)
    c.data.max_objects_per_image = 4
    c.data.train_size = 4096
    c.data.val_size = 256
    c.data.seed = 0
    # Training augmentation: "none" | "flip_scale" (scale jitter, then flip) | "yolo" (ultralytics: mosaic, affine,
    # HSV, flip; jaxdet/data/yolo_augment.py). The yolo fields below are ultralytics' default.yaml (8.4.190).
    c.data.augment = "flip_scale"
    c.data.hflip_prob = 0.5  # horizontal flip probability, both recipes (ultralytics: fliplr)
    c.data.scale_range = (0.75, 1.25)  # flip_scale: zoom range
    c.data.mosaic = 1.0  # yolo: probability of a 4-image mosaic
    c.data.close_mosaic = steps // 10  # yolo: last steps without mosaic (ultralytics: last 10 of 100 epochs)
    c.data.degrees = 0.0  # yolo affine: rotation range (deg)
    c.data.translate = 0.1  # yolo affine: shift range (fraction of the image)
    c.data.scale = 0.5  # yolo affine: zoom in [1 - scale, 1 + scale]
    c.data.shear = 0.0  # yolo affine: shear range (deg)
    c.data.hsv_h = 0.015  # yolo HSV gains (hue, saturation, value)
    c.data.hsv_s = 0.7
    c.data.hsv_v = 0.4

    c.loss = ml_collections.ConfigDict()
    c.loss.iou_target = "stop"  # Case 2 (detached IoU target); "through" = Case 1
    c.loss.lambda_coord = 5.0
    c.loss.lambda_noobj = 0.5

    c.train = ml_collections.ConfigDict()
    c.train.steps = steps  # batches; data.close_mosaic follows it (steps // 10) unless set
    c.train.batch_size = 32  # global batch, divisible by the data-axis size
    # Optimizer recipe (train/recipe.py, train/README.md): "jaxdet" = AdamW on all parameters, linear warm-up then
    # cosine decay, an update every batch; "ultralytics" = ultralytics' trainer (parameter groups, bias-lr and
    # momentum warm-up, linear lrf decay, SGD/AdamW, nominal batch nbs with gradient accumulation).
    c.train.recipe = "jaxdet"
    c.train.learning_rate = 2e-3  # jaxdet: peak LR; ultralytics: lr0 (ultralytics' 0.01 for SGD)
    c.train.warmup_steps = 100  # batches of warm-up (ultralytics: warmup_epochs 3 x batches per epoch)
    c.train.end_lr_factor = 0.02  # jaxdet: final LR = learning_rate * end_lr_factor (cosine)
    c.train.weight_decay = 1e-4  # ultralytics: 5e-4, scaled by batch_size * accumulate / nbs, kernels only
    c.train.grad_clip = 10.0  # global-norm clip; 0 disables (ultralytics: 10.0)
    # recipe = "ultralytics" only; ultralytics' default.yaml values:
    c.train.optimizer = "sgd"  # "sgd" (Nesterov) | "adamw" (betas (momentum, 0.999))
    c.train.momentum = 0.937  # SGD momentum / AdamW beta1
    c.train.lrf = 0.01  # final LR = learning_rate * lrf (linear decay over train.steps)
    c.train.warmup_bias_lr = 0.1  # bias LR at the start of the warm-up (falls to the LR)
    c.train.warmup_momentum = 0.8  # SGD momentum at the start of the warm-up (rises to momentum)
    c.train.nbs = 64  # nominal batch: gradients of round(nbs / batch_size) batches summed per update
    # Model EMA (either recipe; ultralytics' ModelEMA, used for evaluation): off in this config.
    c.train.ema = False
    c.train.ema_decay = 0.9999
    c.train.ema_tau = 2000.0  # decay ramp d = ema_decay * (1 - exp(-updates / ema_tau))
    c.train.max_consecutive_nonfinite = 10  # non-finite steps are skipped; this many in a row stop the run
    c.train.log_every = 25
    c.train.eval_every = 250
    c.train.checkpoint_every = 250
    c.train.keep_checkpoints = 3
    c.train.progress_bar = True
    # A workdir with checkpoints resumes (its config.json must match but for train/workdir.py's safe fields);
    # False moves the previous run into <workdir>/previous-<time>/ and trains from step 0.
    c.train.resume = True

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
