"""jaxdet.data: synthetic shapes (the embedded default), COCO/VOC/YOLO readers, augmentation, batching and
the grain pipeline.

Typical use::

    from jaxdet import data
    train = data.SyntheticShapes("train", image_size=64, seed=0)
    it = data.make_loader(train, batch_size=32, seed=0, augment=True, max_objects=8)
    # ultralytics' recipe (mosaic, affine, HSV, flip):  augment=data.YoloAugment(train, data.YoloRecipe())
    batch = next(it)          # dict: image [L,64,64,3] uint8, boxes [L,8,4], classes [L,8], valid [L,8],
                              #       polygons [L,8,K,2], image_id [L], orig_size [L,2], ratio_pad [L,4]
    state = it.get_state()    # save with orbax (ocp.args.JsonSave) ...; it.set_state(state) to resume
    # rotated boxes: SyntheticShapes(..., rotated=True), read_yolo_obb, read_dota -> examples with corners [n,4,2],
    # batches with rboxes [L,8,5] (cx/W, cy/H, w/W, h/H, angle), see jaxdet.data.records and jaxdet.data.rotated

    coco = data.read_coco("instances.json", image_dir="images/")     # -> RecordSet
    source = data.DetectionSource(coco, image_size=(256, 256))        # -> grain source of letterboxed examples
    image = data.read_image("photo.jpg")   # uint8 [h, w, 3] RGB, upright (EXIF), any mode/bit depth -> 8-bit

See :mod:`jaxdet.data.records` for the record/example/batch conventions and :mod:`jaxdet.data.geometry` for the
canonical polygon order, :mod:`jaxdet.data.images` for how files are decoded (EXIF, grayscale, alpha,
16-bit, TIFF), :mod:`jaxdet.data.letterbox` for letterboxing and mapping predictions back to the
original pixels.
"""

from jaxdet.data.augment import augment_example, hflip, make_augment, scale_jitter
from jaxdet.data.errors import BadImageError, DatasetFormatError, InvalidBoxError
from jaxdet.data.geometry import (
    box_to_polygon,
    canonical_order,
    canonical_polygon,
    canonical_polygons,
    clip_polygon,
    polygon_bounds,
    polygon_signed_area,
)
from jaxdet.data.images import image_size, read_image, verify_image
from jaxdet.data.letterbox import boxes_to_original, letterbox_image
from jaxdet.data.pipeline import loader_length, make_loader
from jaxdet.data.readers import (
    DOTA_CLASSES,
    IMAGE_EXTENSIONS,
    INVALID_BOXES,
    ON_BAD_IMAGE,
    VOC_CLASSES,
    read_coco,
    read_dota,
    read_voc,
    read_yolo,
    read_yolo_files,
    read_yolo_obb,
    voc_class_names,
    yolo_image_files,
    yolo_label_path,
)
from jaxdet.data.records import (
    DetectionRecord,
    DetectionSource,
    RecordSet,
    collate,
    empty_example,
    pad_example,
)
from jaxdet.data.rotated import clip_corners, corners_to_xywhr, xywhr_to_corners
from jaxdet.data.synthetic import ROTATED_SHAPE_CLASSES, SHAPE_CLASSES, SyntheticShapes
from jaxdet.data.writers import export_synthetic, write_coco, write_voc, write_yolo
from jaxdet.data.yolo_augment import YoloAugment, YoloRecipe, hsv_jitter, mosaic4, random_affine

__all__ = [
    "BadImageError",
    "DatasetFormatError",
    "DetectionRecord",
    "DetectionSource",
    "DOTA_CLASSES",
    "IMAGE_EXTENSIONS",
    "INVALID_BOXES",
    "InvalidBoxError",
    "ON_BAD_IMAGE",
    "ROTATED_SHAPE_CLASSES",
    "RecordSet",
    "SHAPE_CLASSES",
    "SyntheticShapes",
    "VOC_CLASSES",
    "YoloAugment",
    "YoloRecipe",
    "augment_example",
    "box_to_polygon",
    "boxes_to_original",
    "canonical_order",
    "canonical_polygon",
    "canonical_polygons",
    "clip_corners",
    "clip_polygon",
    "corners_to_xywhr",
    "collate",
    "empty_example",
    "export_synthetic",
    "hflip",
    "hsv_jitter",
    "image_size",
    "letterbox_image",
    "loader_length",
    "make_augment",
    "make_loader",
    "mosaic4",
    "pad_example",
    "polygon_bounds",
    "polygon_signed_area",
    "read_coco",
    "read_dota",
    "read_image",
    "read_voc",
    "random_affine",
    "read_yolo",
    "read_yolo_files",
    "read_yolo_obb",
    "scale_jitter",
    "verify_image",
    "voc_class_names",
    "yolo_image_files",
    "yolo_label_path",
    "write_coco",
    "write_voc",
    "write_yolo",
    "xywhr_to_corners",
]
