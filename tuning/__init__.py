"""Hyperparameter tuning: strategies, keras-tuner search, distributed launch, report.

The names below are importable without TensorFlow, so the CLI's `--help` can list them.
"""

# keras-tuner's tuners by name (`ktemplate tune --tuner`); `tuning.search` maps them to classes.
TUNERS = ("random", "bayesian", "hyperband", "grid")
# `tf.distribute` strategies by name (`--strategy`); `tuning.strategies` builds them.
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
