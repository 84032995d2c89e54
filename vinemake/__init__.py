"""vinemake: a Makeflow-style file-rule build tool for data-intensive scientific workflows."""

__version__ = "0.1.0"

__all__ = ["__version__"]
