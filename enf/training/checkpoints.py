"""Reading fit checkpoints: clear errors for missing or corrupt files, and the trained decoder + fitter;
writing checkpoints atomically (:class:`AtomicCheckpointIO`).

``load_fit_checkpoint`` is how a later stage (forecasting, editing, the shape VAE) gets the ENF it builds
on::

    fit = enf.training.load_fit_checkpoint("runs/diffusion_plane/version_0/checkpoints/last.ckpt")
    z = fit.fitter.encode(fit.decoder, coords, signal, train=False)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from enf.data.field import FieldSpec
from enf.fitting import Fitter
from enf.geometry import Geometry
from enf.io import atomic_write, write_text_atomic
from enf.nn import EquivariantNeuralField, GlobalLatentField

__all__ = [
    "AtomicCheckpointIO",
    "FitCheckpoint",
    "load_fit_checkpoint",
    "digest_path",
    "file_digest",
    "read_checkpoint",
    "verify_checkpoint",
]


def digest_path(path: str | Path) -> Path:
    """The SHA-256 file written beside a checkpoint: ``last.ckpt`` -> ``last.ckpt.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def file_digest(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checkpoint(path: str | Path) -> None:
    """Raise ``ValueError`` when the checkpoint's bytes match none of the digests stored beside it.

    ``enf`` writes ``<checkpoint>.sha256`` with every checkpoint (:class:`AtomicCheckpointIO`); a checkpoint
    without one (written elsewhere, or by an older enf) is not checked.
    """
    sidecar = digest_path(path)
    if not sidecar.is_file():
        return
    stored = sidecar.read_text().split()
    if file_digest(path) not in stored:
        raise ValueError(
            f"{path} does not match its SHA-256 digest in {sidecar.name}: the file changed after it was written "
            "(disk or copy corruption). Use another checkpoint of the run (last.ckpt, best.ckpt, "
            f"interrupted.ckpt); if you trust this file as it is, delete {sidecar}"
        )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on the destination's filesystem and verifiable.

    Each checkpoint goes to a hidden temporary file beside its destination, is flushed to disk (``fsync``) and
    renamed into place, so a process killed while saving leaves the previous checkpoint whole (Lightning's
    writer opens the destination itself, and a kill mid-write left a truncated ``last.ckpt``). Its SHA-256
    goes to ``<checkpoint>.sha256`` (before the rename, together with the previous file's digest, so either
    side of the rename verifies), and loading through this writer (``--ckpt_path``) or
    :func:`read_checkpoint` refuses a file that matches neither. Remote paths (``s3://...``) go to
    Lightning's writer unchanged. ``enf fit`` installs it in every trainer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        with atomic_write(path) as tmp:
            with tmp.open("wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            # both digests before the rename, so a crash between the renames still verifies
            digests = [file_digest(tmp)] + ([file_digest(path)] if path.is_file() else [])
            write_text_atomic(digest_path(path), "\n".join(digests) + "\n")
        write_text_atomic(digest_path(path), digests[0] + "\n")

    def load_checkpoint(self, path: str | Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if "://" not in str(path) and Path(path).is_file():
            verify_checkpoint(path)
        return super().load_checkpoint(path, *args, **kwargs)

    def remove_checkpoint(self, path: str | Path) -> None:
        super().remove_checkpoint(path)
        if "://" not in str(path):
            digest_path(path).unlink(missing_ok=True)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` of a Lightning checkpoint (tensors and plain types only), with errors that name the file;
    verified against its stored digest first (:func:`verify_checkpoint`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; runs keep theirs in runs/<name>/version_<n>/checkpoints/ "
            "(last.ckpt, best.ckpt, interrupted.ckpt)"
        )
    verify_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on garbage (struct.error, KeyError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path} is not a readable checkpoint (truncated, corrupt, or not written by enf/Lightning): "
            f"{first[:200]}. Use another checkpoint of the run (last.ckpt, best.ckpt, interrupted.ckpt)."
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict')")
    return ckpt


@dataclass(frozen=True)
class FitCheckpoint:
    """The trained parts of a field-fitting run."""

    module: Any  # FieldFittingModule (eval mode)
    decoder: EquivariantNeuralField | GlobalLatentField
    fitter: Fitter
    geometry: Geometry
    field_spec: FieldSpec | None
    path: Path


def load_fit_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> FitCheckpoint:
    """Rebuild a :class:`~enf.training.FieldFittingModule` from a checkpoint written by ``enf fit``.

    Returns the module (eval mode) with its trained decoder, fitter (bound, e.g. the Meta-SGD initial latent
    and step sizes), geometry and the data's :class:`FieldSpec`. Raises ``FileNotFoundError`` /
    ``ValueError`` naming the file when it is missing, corrupt, or not a field-fitting checkpoint.
    """
    from enf.training.fitting_module import FieldFittingModule

    path = Path(path)
    hparams = read_checkpoint(path).get("hyper_parameters") or {}
    if "decoder" not in hparams or "fitter" not in hparams:
        raise ValueError(
            f"{path} holds no decoder/fitter configuration (it was not written by `enf fit`, or the module "
            "was built in code: then use FieldFittingModule.load_from_checkpoint(path, decoder=..., fitter=...))"
        )
    module = FieldFittingModule.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    module.eval()
    return FitCheckpoint(
        module=module,
        decoder=module.decoder,
        fitter=module.fitter,
        geometry=module.geometry,
        field_spec=module.field_spec,
        path=path,
    )
