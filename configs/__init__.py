"""Experiment configs: one module per experiment, each with ``get_config()`` returning a ConfigDict.

Pick one with ``python -m train --config configs/NAME.py`` and override any field with
``--config.section.field=value``.
"""
