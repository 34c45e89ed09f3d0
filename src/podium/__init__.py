"""podium: image-classification competitions, from folder to trusted submission."""
import os

# podium makes no network call the user did not ask for: albumentations asks PyPI for a newer version of itself when
# it is imported, unless this is set. Every podium module is imported after this package, so it is set first.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
