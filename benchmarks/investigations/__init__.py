"""Two one-off profiles of the YOLOv1 train step on the CPU, kept for re-running; not maintained as benchmarks.

They answered one question each about ``benchmarks/train_step.py``'s step and are not part of
``benchmarks/run_gpu.sh`` or of the tables the README quotes. Their tests (``tests/benchmarks/test_train_step_gap.py``,
``test_train_step_profile.py``) keep the op classification working; their tables are
``benchmarks/results/train_step_gap.md`` and ``train_step_profile.md``.

- ``python -m benchmarks.investigations.train_step_profile``: the step op by op under the 2 × 2 of jaxdet's two
  XLA:CPU tunings (compiler options; the space-to-depth stride-2 input gradient). Found: under XLA's defaults the
  convolutions run as YNNPACK fusions, 65–78 % of the step's op time at every batch; with jaxdet's options those
  fusions are only dots and reductions, and the largest ops left are layout copies for the kernel gradients (the
  ``[N, 64, 64, 3]`` input transposed for the first layer's, 10.4 ms at batch 128). On two cores the profile
  cannot see most of a convolution's time (XLA runs it on intra-op threads after the thunk's event ends).
- ``python -m benchmarks.investigations.train_step_gap``: jaxdet against torch eager and ``torch.compile``, both
  profiled on one pinned core, where the op times add up to the step. Found: jaxdet sits between the two torch
  modes at batch 32 (42.8 ms; 53.5 and 41.2) and is last at batch 128 (186.9 ms; 155.5 and 127.8), because of its
  forward convolutions (44.9 ms against oneDNN's 23.2–30.0) and 26.9 ms of layout copies that XLA:CPU's Eigen
  kernel-gradient convolution needs (activations as ``[C, H, W, N]``, gradients as ``[H, W, N, O]``).
"""
