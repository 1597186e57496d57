"""``python -m train.experiments``: see :mod:`train.experiments`."""

from train.experiments.runner import main

main()
