"""The platform's version (part of every result's code version and cache key)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
