"""jaxdet's timing scripts: each times jaxdet against its PyTorch counterpart and writes a markdown table.

Run one from the repository root as a module, ``python -m benchmarks.<name>`` (``--help`` lists its flags;
``--quick`` is a smoke test that writes nothing unless ``--out`` is given), e.g.::

    python -m benchmarks.boxes                       # writes benchmarks/results/boxes.md
    python -m benchmarks.train_step --quick --out /tmp/train_step.md
    bash benchmarks/run_gpu.sh                       # the GPU set, one report

Every script's ``main()`` is :func:`benchmarks._timing.main` (the common flags, the run, the table written to
``benchmarks/results/<name>.md``). The scripts import each other and their harness as ``from benchmarks import
_timing``; the PyTorch twins they share with the parity tests live in :mod:`jaxdet.parity`.
``benchmarks.investigations`` keeps two one-off profiles of the YOLOv1 train step, for re-running.

Importing the package sets ``YOLO_OFFLINE=1`` (unless set): ultralytics reads it when it is imported, and no
script downloads anything.
"""

import os

os.environ.setdefault("YOLO_OFFLINE", "1")
