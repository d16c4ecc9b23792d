"""A user's data loaders (``dataset.source: custom``)."""
