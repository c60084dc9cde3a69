"""Brain tumor MRI classification: the package shared by the top-level scripts."""

__version__ = "0.1.0"
