"""The default jaxdet detector and its YOLOv1 training loss, written in plain PyTorch (the contender of
``benchmarks/train_step.py``).

Same computation as :class:`jaxdet.models.detector.Detector` + :meth:`jaxdet.models.YOLOv1Head.loss` for the
``yolov1`` head, layer for layer (checked against the NNX model to float32 precision in
``tests/parity/test_torch_detector.py``):

- input ``images * 2 - 1``;
- stages: for each width ``w_i``: conv3x3 (no bias) with stride 2 while the halved map is still ``>= S`` on its
  shorter side (else stride 1) -> GroupNorm(eps=1e-6) -> SiLU, then ``depth_i`` stride-1 blocks. Convolutions
  use TensorFlow/XLA ``SAME`` padding: for a stride-2 conv on an even size that is 0 before and 1 after
  (``F.pad`` then an unpadded conv), for stride 1 it is 1 on both sides;
- if the map is not ``S x S``: antialiased bilinear resize (``F.interpolate(..., antialias=True)``, the same
  triangle filter as ``jax.image.resize(method="linear", antialias=True)``);
- head: concatenate two coordinate channels (cell centres in [-1, 1], x then y) -> conv3x3 block -> conv1x1
  (with bias) -> ``[N, S, S, D]`` (returned channels-last like the JAX model);
- loss: ``sigmoid`` on the B·5 box fields, ``softmax`` on the C class scores, then
  :func:`jaxdet.parity.torch_detection.yolov1_loss_torch` (the independent PyTorch YOLOv1 reference), mean
  over images.

Layout inside the network is NCHW (PyTorch's native one); :meth:`TorchDetector.forward` takes NCHW images.
``load_nnx_params`` copies an NNX :class:`~jaxdet.models.detector.Detector`'s parameters in.

This module imports torch at the top: import it lazily from library code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jaxdet.models import YOLOv1Head, make_head
from jaxdet.parity.torch_detection import yolov1_loss_torch

__all__ = [
    "TorchConvBlock", "TorchDetector", "build_torch_detector", "head_loss_options", "load_nnx_params", "nchw",
    "yolov1_head_loss_torch",
]


def _num_groups(channels: int, groups: int) -> int:
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g


def _same_pads(size: int, stride: int, kernel: int = 3) -> tuple[int, int]:
    """XLA/TensorFlow SAME padding ``(before, after)`` of one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class TorchConvBlock(nn.Module):
    """conv3x3 (SAME padding, stride given at call time) -> GroupNorm or bias -> SiLU."""

    def __init__(self, in_ch: int, out_ch: int, *, norm: str, groups: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, 3, 3))
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        if norm == "group":
            self.norm = nn.GroupNorm(_num_groups(out_ch, groups), out_ch, eps=1e-6)
            self.bias = None
        elif norm == "none":
            self.norm = None
            self.bias = nn.Parameter(torch.zeros(out_ch))
        else:
            raise ValueError(f"norm must be 'group' or 'none', got {norm!r}")

    def forward(self, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        ph, pw = _same_pads(x.shape[-2], stride), _same_pads(x.shape[-1], stride)
        if ph[0] == ph[1] and pw[0] == pw[1]:
            x = F.conv2d(x, self.weight, stride=stride, padding=(ph[0], pw[0]))
        else:
            x = F.conv2d(F.pad(x, (pw[0], pw[1], ph[0], ph[1])), self.weight, stride=stride)
        x = self.norm(x) if self.norm is not None else x + self.bias.view(1, -1, 1, 1)
        return F.silu(x)


class TorchDetector(nn.Module):
    """PyTorch twin of :class:`jaxdet.models.detector.Detector` (arguments as there)."""

    def __init__(
        self,
        *,
        out_channels: int,
        grid_size: int = 7,
        widths: Sequence[int] = (16, 32, 64, 128),
        depths: Sequence[int] = (0, 1, 1, 1),
        head_width: int = 128,
        norm: str = "group",
        groups: int = 8,
    ):
        super().__init__()
        widths, depths = tuple(int(w) for w in widths), tuple(int(d) for d in depths)
        if len(widths) == 0 or len(widths) != len(depths):
            raise ValueError(f"widths and depths must be non-empty and of equal length, got {widths}, {depths}")
        self.grid_size = int(grid_size)
        self.out_channels = int(out_channels)
        stages = []
        in_ch = 3
        for w, d in zip(widths, depths):
            blocks = [TorchConvBlock(in_ch, w, norm=norm, groups=groups)]
            blocks += [TorchConvBlock(w, w, norm=norm, groups=groups) for _ in range(d)]
            stages.append(nn.ModuleList(blocks))
            in_ch = w
        self.stages = nn.ModuleList(stages)
        self.neck = TorchConvBlock(in_ch + 2, head_width, norm=norm, groups=groups)
        self.out = nn.Conv2d(head_width, out_channels, kernel_size=1)
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Args: images ``[N, 3, H, W]``, uint8 (the loader's batches, scaled here as jaxdet's model scales them)
        or float in [0, 1]. Returns the raw head tensor ``[N, S, S, D]``."""
        s = self.grid_size
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        x = images * 2.0 - 1.0
        for stage in self.stages:
            stride = 2 if min(x.shape[-2], x.shape[-1]) // 2 >= s else 1
            x = stage[0](x, stride)
            for block in stage[1:]:
                x = block(x)
        n = x.shape[0]
        if tuple(x.shape[-2:]) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        centres = (torch.arange(s, dtype=x.dtype, device=x.device) + 0.5) / s * 2.0 - 1.0
        gx = centres.view(1, 1, 1, s).expand(n, 1, s, s)  # x varies along the width (last) axis
        gy = centres.view(1, 1, s, 1).expand(n, 1, s, s)
        x = self.neck(torch.cat([x, gx, gy], dim=1))
        return self.out(x).permute(0, 2, 3, 1)


def build_torch_detector(model_cfg, *, num_classes: int) -> TorchDetector:
    """The PyTorch twin of ``jaxdet.models.build_detector(model_cfg, num_classes=...)`` (yolov1 head).

    The output bias is the head's (every confidence at ``jaxdet.models.CONFIDENCE_PRIOR``), as in JAX.
    """
    get = model_cfg.get
    head = make_head(model_cfg, num_classes=num_classes)
    if not isinstance(head, YOLOv1Head):
        raise ValueError(f"the torch twin has only the YOLOv1 head; got model_cfg.head={get('head')!r}")
    model = TorchDetector(
        out_channels=head.channels,
        grid_size=int(get("grid_size", 7)),
        widths=tuple(get("widths", (16, 32, 64, 128))),
        depths=tuple(get("depths", (0, 1, 1, 1))),
        head_width=int(get("head_width", 128)),
        norm=str(get("norm", "group")),
        groups=int(get("groups", 8)),
    )
    with torch.no_grad():
        model.out.bias.copy_(torch.from_numpy(head.output_bias()))
    return model


def _copy(dst: torch.Tensor, src) -> None:
    src = torch.from_numpy(np.array(src, dtype=np.float32))
    if tuple(src.shape) != tuple(dst.shape):
        raise ValueError(f"parameter shape mismatch: torch {tuple(dst.shape)} vs nnx {tuple(src.shape)}")
    dst.copy_(src.to(dst.device, dst.dtype))


def _load_block(dst: TorchConvBlock, src) -> None:
    _copy(dst.weight, np.transpose(np.asarray(src.kernel[...]), (3, 2, 0, 1)))  # HWIO -> OIHW
    if dst.norm is not None:
        _copy(dst.norm.weight, src.norm.scale[...])
        _copy(dst.norm.bias, src.norm.bias[...])
    else:
        _copy(dst.bias, src.bias[...])


@torch.no_grad()
def load_nnx_params(model: TorchDetector, nnx_model) -> TorchDetector:
    """Copies the parameters of an NNX :class:`jaxdet.models.detector.Detector` into ``model`` (in place)."""
    if len(model.stages) != len(nnx_model.stages):
        raise ValueError(f"stage count differs: torch {len(model.stages)} vs nnx {len(nnx_model.stages)}")
    for t_stage, j_stage in zip(model.stages, nnx_model.stages):
        if len(t_stage) != len(j_stage):
            raise ValueError("stage depths differ between the torch and nnx detectors")
        for t_block, j_block in zip(t_stage, j_stage):
            _load_block(t_block, j_block)
    _load_block(model.neck, nnx_model.neck)
    _copy(model.out.weight, np.transpose(np.asarray(nnx_model.out.kernel[...]), (3, 2, 0, 1)))
    _copy(model.out.bias, nnx_model.out.bias[...])
    return model


def nchw(images: np.ndarray) -> torch.Tensor:
    """A ``[N, H, W, C]`` numpy batch of images as the ``[N, C, H, W]`` tensor the twin takes."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)))


def head_loss_options(cfg) -> dict:
    """The keyword arguments of :func:`yolov1_head_loss_torch` that a YOLOv1 config's ``model`` / ``loss`` give."""
    return {"num_boxes": int(cfg.model.num_boxes), "num_classes": int(cfg.model.num_classes),
            "lambda_coord": float(cfg.loss.lambda_coord), "lambda_noobj": float(cfg.loss.lambda_noobj),
            "iou_target": str(cfg.loss.iou_target)}


def yolov1_head_loss_torch(
    raw: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    gt_valid: torch.Tensor,
    *,
    num_boxes: int = 2,
    num_classes: int,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
    iou_target: str = "stop",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:meth:`jaxdet.models.YOLOv1Head.loss`, in PyTorch: activations, YOLOv1 loss, image mean.

    Args:
      raw: ``[N, S, S, B·5 + C]`` raw head tensor.
      gt_boxes, gt_classes, gt_valid: ``[N, M, 4]`` xyxy normalised, ``[N, M]``, ``[N, M]``.

    Returns:
      ``(loss scalar, {"loss", "coord_xy", "coord_wh", "obj", "noobj", "cls"})`` (means over images).
    """
    nb = num_boxes * 5
    pred = torch.cat([torch.sigmoid(raw[..., :nb]), torch.softmax(raw[..., nb:], dim=-1)], dim=-1)
    terms = yolov1_loss_torch(
        pred, gt_boxes, gt_classes, gt_valid, num_boxes=num_boxes, num_classes=num_classes,
        lambda_coord=lambda_coord, lambda_noobj=lambda_noobj, iou_target=iou_target,
    )
    loss = terms["total"].mean()
    metrics = {"loss": loss, **{k: v.mean() for k, v in terms.items() if k != "total"}}
    return loss, metrics
