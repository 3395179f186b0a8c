"""The edit application: :class:`ImageEditor` (a fitted image model that encodes images to latents and
decodes edited latents), the per-client edit sessions (:mod:`~enf.apps.edit.sessions`), the web server
(:mod:`~enf.apps.edit.server`, FastAPI; imported on use, it needs the ``edit`` extra) and its page
(``static/``). The edits themselves are the algebra of :mod:`enf.editing`.

    enf edit --ckpt runs/mnist/version_0/checkpoints/last.ckpt --serve --port 8000
"""

from enf.apps.edit.editor import IMAGE_FORMATS, MAX_IMAGE_PIXELS, ImageEditor, image_from_bytes, image_to_png

__all__ = ["IMAGE_FORMATS", "MAX_IMAGE_PIXELS", "ImageEditor", "image_from_bytes", "image_to_png"]
