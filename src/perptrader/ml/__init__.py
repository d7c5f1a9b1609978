"""Machine learning on the feature sets: datasets and walk-forward splits, a gradient-
boosting ensemble, two xLSTM experts, evaluation against baselines, a model registry,
tuning, and the model-driven strategy for the backtester."""
