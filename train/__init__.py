"""The jaxdet training system: ``python -m train``.

Modules:
  cli         command line (``--config``, ``--config.a.b=value``, ``--workdir``) and config loading.
  mesh        multi-host initialisation and the device mesh / shardings.
  data        per-process, position-addressable batches built from ``jaxdet.data``.
  step        the train state pytree and the single jitted, sharded, donated train step.
  checkpoint  orbax CheckpointManager wrapper (state + JSON metadata / data position).
  metrics_log JSONL + TensorBoard writers.
  plots       PNG plots written at the end of a run.
  loop        the training loop (``train.loop.run``).
"""
