"""podium: image-classification competitions, from folder to trusted submission."""
__version__ = "0.1.0"
