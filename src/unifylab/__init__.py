"""unifylab: a lab for unified multimodal models (understanding + generation in one network)."""

__version__ = "0.1.0"
