"""Hyperparameter search with Ray Tune (see the hyperparameter-search issue)."""

__all__: list[str] = []
