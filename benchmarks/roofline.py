"""Dense classification losses at a YOLOv8-like size against the memory-bandwidth roofline.

Sigmoid focal, varifocal (VFL) and quality focal (QFL) loss, forward + backward (gradient w.r.t. the logits of
the summed loss) on ``B × A × C = 64 × 8400 × 80`` float32 logits (YOLOv8 at 640 px: 8400 anchors, COCO's 80
classes): jaxdet jit vs PyTorch (torchvision's ``sigmoid_focal_loss``; the plain-torch VFL/QFL references of
``jaxdet.parity.torch_dense``), eager and ``torch.compile``, on the default device of each (GPU when present).

**Traffic model** (the least any implementation must move, one fused pass): read the logits and the targets
(float32 each) and write the gradient w.r.t. the logits (float32):

    bytes = (4 + 4 + 4) · B · A · C          (= 516 MB at the default size; the scalar loss is ignored)

achieved bandwidth = bytes / median time, and the roofline fraction = achieved / peak DRAM bandwidth. An
implementation that materialises intermediates in memory (unfused) moves more bytes than this, so its fraction
is an upper-bound-style efficiency figure: 100 % means "as fast as one pass over the unavoidable data".

Peak bandwidths (vendor datasheets) are matched on the device name (:data:`PEAK_GBPS`); ``--peak-gbps``
overrides, and on a CPU the fraction is ``n/a`` unless given.

    python -m benchmarks.roofline                           # writes benchmarks/results/roofline.md
    python -m benchmarks.roofline --quick --out /tmp/roofline.md
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import torch

from benchmarks import _timing
from benchmarks._timing import Timing, jit, time_callable
from benchmarks.losses import dense_inputs, torch_dense_loss, torch_sigmoid_focal
from jaxdet.losses import focal

#: (substring of the upper-cased device name, peak DRAM bandwidth in GB/s = 1e9 B/s), first match wins.
#: Sources: NVIDIA H200 / H100 / A100 datasheets.
PEAK_GBPS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("GH200",), 4000.0),           # GH200 96 GB HBM3: 4 TB/s (before "H200", which it contains)
    (("H200",), 4800.0),            # H200 SXM / NVL 141 GB HBM3e: 4.8 TB/s
    (("H100", "NVL"), 3900.0),      # H100 NVL 94 GB: 3.9 TB/s
    (("H100", "PCIE"), 2000.0),     # H100 PCIe 80 GB HBM2e: 2.0 TB/s
    (("H100",), 3350.0),            # H100 SXM5 80 GB HBM3 ("NVIDIA H100 80GB HBM3"): 3.35 TB/s
    (("A100", "80GB", "PCIE"), 1935.0),  # A100 80 GB PCIe: 1,935 GB/s
    (("A100", "80GB"), 2039.0),     # A100 80 GB SXM4: 2,039 GB/s
    (("A100",), 1555.0),            # A100 40 GB (SXM4 and PCIe): 1,555 GB/s
)


def peak_gbps(device_name: str, override: float | None = None) -> float | None:
    """Peak memory bandwidth (GB/s) for ``device_name``; ``override`` wins; None when unknown (e.g. a CPU)."""
    if override is not None:
        return float(override)
    name = device_name.upper().replace("-", "").replace(" ", "").replace("_", "")
    for keys, gbps in PEAK_GBPS:
        if all(k in name for k in keys):
            return gbps
    return None


def traffic_bytes(batch: int, anchors: int, classes: int, *, itemsize: int = 4) -> int:
    """Bytes of the traffic model: logits + targets read, logits' gradient written."""
    return 3 * itemsize * batch * anchors * classes


def _losses():
    return [
        ("sigmoid focal", lambda x, t: focal.sigmoid_focal_loss(x, t), torch_sigmoid_focal, "binary"),
        ("varifocal (stop)", lambda x, t: focal.varifocal_loss(x, t), torch_dense_loss("varifocal_loss"), "scores"),
        ("quality focal (stop)", lambda x, t: focal.quality_focal_loss(x, t),
         torch_dense_loss("quality_focal_loss"), "scores"),
    ]


def _jax_step(loss, logits, targets) -> Callable[[], Any]:
    grad = jit(jax.grad(lambda x, t: jnp.sum(loss(x, t))))
    x, t = jax.device_put(logits), jax.device_put(targets)
    return lambda: grad(x, t)


def _torch_step(factory, logits, targets, *, compiled: bool, device) -> Callable[[], Any]:
    loss = factory()
    loss = torch.compile(loss) if compiled else loss
    x = torch.from_numpy(logits).to(device).requires_grad_(True)
    t = torch.from_numpy(targets).to(device)

    def step():
        x.grad = None
        loss(x, t).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def measure(args) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    shape = (args.batch, args.anchors, args.classes)
    logits, binary, scores = dense_inputs(shape)
    tdev = _timing.torch_device(args.torch_device)
    nbytes = traffic_bytes(*shape)
    rows = []
    for label, jax_loss, torch_factory, kind in _losses():
        targets = binary if kind == "binary" else scores
        contenders = [("jaxdet jit", functools.partial(_jax_step, jax_loss, logits, targets))]
        contenders.append(("torch eager", functools.partial(_torch_step, torch_factory, logits, targets,
                                                            compiled=False, device=tdev)))
        if not args.no_compile:
            contenders.append(("torch.compile", functools.partial(_torch_step, torch_factory, logits, targets,
                                                                  compiled=True, device=tdev)))
        for who, make in contenders:
            timing = time_callable(make(), repeats=args.repeats)
            rows.append({"loss": label, "who": who, "timing": timing})
            print(f"{label} / {who}: median {timing.median_s * 1e3:.3f} ms, "
                  f"{nbytes / timing.median_s / 1e9:.1f} GB/s", flush=True)
    jdev = jax.devices()[0]
    tname = torch.cuda.get_device_name(tdev) if tdev.type == "cuda" else "CPU"
    meta = {
        "shape": shape, "bytes": nbytes, "jax_device": jdev.device_kind, "jax_platform": jdev.platform,
        "torch_device": tname, "peak_jax": peak_gbps(jdev.device_kind, args.peak_gbps) if
        (jdev.platform != "cpu" or args.peak_gbps) else None,
        "peak_torch": peak_gbps(tname, args.peak_gbps) if (tdev.type != "cpu" or args.peak_gbps) else None,
        "torch_version": torch.__version__,
    }
    return rows, meta


def markdown(rows, meta, *, repeats: int) -> str:
    b, a, c = meta["shape"]
    gb = meta["bytes"] / 1e9
    peak_j, peak_t = meta["peak_jax"], meta["peak_torch"]

    def peak_txt(p):
        return "n/a" if p is None else f"{p:,.0f} GB/s"

    lines = [
        "### Dense losses vs the memory-bandwidth roofline (benchmarks/roofline.py)\n",
        (f"Forward + backward (gradient w.r.t. the logits) of the summed loss on {b}×{a:,}×{c} float32 logits. "
         f"Traffic model: logits + targets read, gradient written = 12 B × {b * a * c:,} = {gb:.3f} GB per step. "
         f"Achieved = bytes / median time; roofline = achieved / peak DRAM bandwidth. Median of {repeats} runs.\n"),
        (f"Device: jax {jax.__version__} on {meta['jax_device']} ({meta['jax_platform']}; peak "
         f"{peak_txt(peak_j)}); torch {meta['torch_version']} on {meta['torch_device']} (peak {peak_txt(peak_t)}). "
         f"Host: {_timing.host()}.\n"),
        "| loss | contender | median (ms) | achieved (GB/s) | roofline fraction | first call (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        tm: Timing = row["timing"]
        achieved = meta["bytes"] / tm.median_s / 1e9
        peak = peak_j if row["who"].startswith("jaxdet") else peak_t
        frac = "n/a" if peak is None else f"{100 * achieved / peak:.1f} %"
        lines.append(f"| {row['loss']} | {row['who']} | {tm.median_s * 1e3:.3f} | {achieved:,.1f} | {frac} "
                     f"| {tm.first_s:.2f} |")
    return "\n".join(lines) + "\n"


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--anchors", type=int, default=8400)
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--peak-gbps", type=float, default=None, help="peak DRAM bandwidth override (GB/s)")
    p.add_argument("--torch-device", default=None,
                   help="torch device (default: $JAXDET_TORCH_DEVICE, else cuda when available, else cpu)")


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.quick:
        args.batch, args.anchors = 2, 840


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return _timing.parse_args(__doc__, add_arguments=_add_arguments, check_args=_check_args, argv=argv)


def run(args: argparse.Namespace) -> str:
    rows, meta = measure(args)
    return markdown(rows, meta, repeats=args.repeats)


def main(argv: list[str] | None = None) -> str | None:
    return _timing.main(__doc__, run, results_name="roofline.md", add_arguments=_add_arguments,
                        check_args=_check_args, argv=argv)


if __name__ == "__main__":
    main()
