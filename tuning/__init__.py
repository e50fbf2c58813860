"""Hyperparameter tuning: strategies, keras-tuner search, distributed launch, report."""
