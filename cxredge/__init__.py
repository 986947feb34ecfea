"""cxredge: chest X-ray classifiers from data to a measured edge model."""

__version__ = "0.1.0"
