"""YOLOv8n (ultralytics yolov8.yaml, scale n) on the embedded synthetic shapes, small enough for a CPU.

The default config of ``python -m train``. 64 px images (a multiple of 32: levels 8×8, 4×4, 2×2), 2,000 batches
of 16 (about 8 epochs of the 4,096 training images), trained with ultralytics' recipe (SGD, warm-up, model EMA;
train/README.md) except for the nominal batch: ``train.nbs = 16``, an update every batch, where ultralytics sums
the gradients of 4 batches of 16 (nbs 64). On a 2-core CPU the run took 4 min 21 s and ended at box mAP@.5
0.985 (train/README.md, "Measured runs"); an earlier 300 batches at nbs 64 (75 updates) ended at 0.03. The
BatchNorm statistics are trained in the model state, averaged by the EMA, and the EMA is evaluated.
``--config.model.scale=s`` for YOLOv8s, ``--config.model.dtype=bfloat16`` for bf16 activations on GPU/TPU.

Run with ``python -m train`` (or ``--config=configs/yolov8n_shapes.py``).

Glossary: Case 1: a target computed from the predictions keeps its gradient (``"through"``); Case 2: its gradient is
stopped (``"stop"``, what every public YOLO does).
"""

import ml_collections

from configs import yolov1_shapes


def get_config() -> ml_collections.ConfigDict:
    c = yolov1_shapes.get_config()  # data, train, eval and mesh sections; model, loss and the recipe below
    c.name = "yolov8n_shapes"

    c.model = ml_collections.ConfigDict()
    c.model.head = "yolov8"
    c.model.image_size = c.data.get_ref("image_size")  # shared with data.image_size
    c.model.num_classes = 5  # the synthetic shapes' classes; for a folder, the data's (train.data.prepare_data)
    c.model.scale = "n"  # yolov8.yaml scale: n | s | m | l | x
    c.model.reg_max = 16  # DFL bins per box side
    c.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (parameters stay float32)
    c.model.init = ""  # initial weights: "" random, an ultralytics .pt or a jaxdet workdir (train/init_weights.py)

    c.loss = ml_collections.ConfigDict()  # jaxdet.losses.yolov8.yolov8_loss (ultralytics' defaults)
    c.loss.box = 7.5  # gains
    c.loss.cls = 0.5
    c.loss.dfl = 1.5
    c.loss.score_target = "stop"  # Case 2 (ultralytics' no_grad assigner); "through" = Case 1
    c.loss.topk = 10  # task-aligned assignment candidates per object
    c.loss.tal_norm_eps = 1e-9  # assigner's score normaliser epsilon (ultralytics); 0 for tiny objects (yolov8n_dense)

    # ultralytics' training recipe (train/recipe.py): SGD lr0 0.01 momentum 0.937 (warm-up from 0.8), bias LR
    # warm-up from 0.1, linear decay to lrf 0.01, weight decay 5e-4 on kernels only, model EMA for evaluation.
    c.train.recipe = "ultralytics"
    c.train.steps = 2000  # batches (2,000 updates at nbs 16)
    c.train.nbs = 16  # nominal batch: an update every batch of 16 (ultralytics: 64, gradients of 4 batches)
    c.train.batch_size = 16  # global batch, divisible by the data-axis size
    c.train.optimizer = "sgd"  # or "adamw", "musgd" (ultralytics' MuSGD), "auto" (ultralytics' rule; train/README.md)
    c.train.learning_rate = 0.01  # lr0
    c.train.warmup_steps = 100  # batches (ultralytics: 3 epochs; 4096 / 16 = 256 batches per epoch here)
    c.train.weight_decay = 5e-4
    c.train.ema = True
    c.train.freeze = ""  # layers not trained: N (model.0 .. N-1) or a list "[0, 1, '22.cv2']" (train/freeze.py)
    c.train.eval_every = 1000
    c.train.checkpoint_every = 1000

    # Validation as ultralytics' DetectionValidator: conf 0.001, NMS IoU 0.7, max_det 300, multi-label NMS over
    # the 30,000 best (anchor, class) pairs (max_nms); mAP in original image pixels.
    c.eval.score_threshold = 0.001
    c.eval.iou_threshold = 0.7
    c.eval.max_detections = 300
    c.eval.multi_label = True
    c.eval.pre_nms_top_k = 30000
    return c
