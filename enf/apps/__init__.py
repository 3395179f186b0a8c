"""Applications built on the library: :mod:`enf.apps.edit`, the image editor and its web page."""
