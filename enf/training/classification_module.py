"""``ClassificationModule``: class labels from latent point clouds (or pixels), one task, three modes.

    enf classify fit --config configs/classify/mnist.yaml          # se2 latents, two-stage
    enf classify fit --config configs/classify/mnist_e2e.yaml      # the same, end to end
    enf classify fit --config configs/classify/mnist_cnn.yaml      # the pixel CNN reference

Modes (``mode``):

* ``two_stage``: a frozen fitted ENF (``fit_checkpoint``, written by ``enf fit``) encodes every image by its
  test-time inner loop (no refinement); the latents of the training and validation splits are encoded once
  and kept in memory (or read from ``enf encode`` files, ``latent_files``), the classifier
  (:class:`~enf.downstream.LatentClassifier`) trains on them, optionally with every training cloud moved by a
  random group element (``augment``).
* ``end_to_end``: the ENF of ``fit_checkpoint`` is the starting point; every step adapts the latents with
  the differentiable inner loop (reconstruction only, as in training) and minimises the cross-entropy of the
  classifier on them plus ``recon_weight`` times the reconstruction loss, so the decoder, the initial latent
  and the Meta-SGD step sizes learn with the classifier.
* ``pixels``: the classifier (:class:`~enf.downstream.PixelCNN`) reads the images themselves.

Data: labelled images (``ImageDataModule``, e.g. ``mnist``) or labelled signed-distance samples of 3-D shapes
(``SDFDataModule`` with ``dataset: primitives``; modes ``two_stage`` and ``end_to_end``).

Evaluation (``metrics.json``): ``accuracy_<split>``, ``accuracy_test_class<k>`` per class and
``accuracy_test_rotated``: the test fields rotated and encoded again, seeded: images by random angles about the
image centre (:func:`enf.data.grid.rotate_images`), 3-D shapes by random rotations about the origin (every sample
point and surface point moved, the signed distances kept: the samples of the rotated shape). Figures:
``confusion_test.png``, ``confusion_test_rotated.png`` and misclassified test examples with their latents.

A classifier whose geometry has only positions (``absolute2d``) on latents with orientations reads their
positions: the non-equivariant baseline on the same latents.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor, nn

from enf.data import keys
from enf.data.grid import image_to_signal, rotate_images, signal_to_image
from enf.downstream import LatentClassifier, PixelCNN
from enf.geometry import random_rotation
from enf.latents import Latents
from enf.training.encoded_latents import ENCODED_SPLITS, load_encoded_split
from enf.training.task import TaskModule, move_batch

__all__ = ["MODES", "ClassificationModule"]

log = logging.getLogger(__name__)

MODES = ("two_stage", "end_to_end", "pixels")


class ClassificationModule(TaskModule):
    """Classification of fields by their latent point clouds (or their pixels, the reference).

    Args:
        classifier: a :class:`~enf.downstream.LatentClassifier` (modes ``two_stage``, ``end_to_end``) or a
            :class:`~enf.downstream.PixelCNN` (mode ``pixels``).
        mode: ``two_stage``, ``end_to_end`` or ``pixels`` (module docstring).
        fit_checkpoint: the ``enf fit`` checkpoint whose ENF encodes the images (not for ``pixels``).
        lr: AdamW learning rate of the classifier.
        enf_lr: learning rate of the ENF in ``end_to_end`` (decoder, initial latent, step sizes).
        weight_decay: AdamW weight decay.
        recon_weight: weight of the reconstruction loss in ``end_to_end``.
        augment: ``two_stage``: move every training cloud by a random group element of the ENF's geometry.
        num_rotated_test: test images rotated for ``accuracy_test_rotated`` (``None``: all; ``0``: skip).
        num_plot_samples: misclassified examples drawn.
        seed: seed of the rotation angles and of the augmentation.
        latent_files: ``two_stage``: ``{"train": path, "val": path}`` (either or both), ``enf encode --split``
            files of ``fit_checkpoint`` read instead of encoding those splits at the start of the run
            (checked against the data and the ENF: :func:`~enf.training.encoded_latents.load_encoded_split`).
    """

    run_prefix = "classify_"

    def __init__(
        self,
        *,
        classifier: nn.Module,
        mode: str = "two_stage",
        fit_checkpoint: str | None = None,
        lr: float = 1e-3,
        enf_lr: float = 1e-4,
        weight_decay: float = 1e-4,
        recon_weight: float = 1.0,
        augment: bool = False,
        num_rotated_test: int | None = None,
        num_plot_samples: int = 16,
        seed: int = 0,
        latent_files: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "pixels":
            if not isinstance(classifier, PixelCNN):
                raise TypeError(
                    f"mode 'pixels' needs an enf.downstream.PixelCNN, got {type(classifier).__name__}"
                )
            if fit_checkpoint is not None:
                raise ValueError("mode 'pixels' reads the images: remove model.fit_checkpoint")
        else:
            if not isinstance(classifier, LatentClassifier):
                raise TypeError(
                    f"mode {mode!r} needs an enf.downstream.LatentClassifier, got {type(classifier).__name__}"
                )
            if fit_checkpoint is None:
                raise ValueError(
                    f"mode {mode!r} needs model.fit_checkpoint: the checkpoint of an `enf fit` run on the same data"
                )
        for label, value in (("lr", lr), ("enf_lr", enf_lr)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{label} must be a finite number > 0, got {value!r}")
        if not (recon_weight >= 0 and math.isfinite(recon_weight)):
            raise ValueError(f"recon_weight must be a finite number >= 0, got {recon_weight!r}")
        if num_rotated_test is not None and num_rotated_test < 0:
            raise ValueError(f"num_rotated_test must be None or >= 0, got {num_rotated_test}")
        if latent_files:
            if mode != "two_stage":
                raise ValueError(f"model.latent_files is for mode 'two_stage' (encoded once), not {mode!r}")
            unknown = sorted(set(latent_files) - set(ENCODED_SPLITS))
            if unknown:
                raise ValueError(
                    f"model.latent_files keys must be among {ENCODED_SPLITS}, got {unknown} "
                    "(the test split is always encoded by the run)"
                )
        self.save_hyperparameters(ignore=["classifier"])
        self.classifier = classifier
        self.mode = mode
        self.fit = None
        self.geometry = None
        if fit_checkpoint is not None:
            self._attach_enf(fit_checkpoint)
        self._cache: dict[str, tuple[Latents, Tensor]] = {}
        self._eval_rows: dict[str, list[tuple[Tensor, Tensor]]] = {}
        self._image_shape: tuple[int, int, int] | None = None

    # ----------------------------------------------------------------------------------- the encoder
    def _attach_enf(self, path: str) -> None:
        from enf.training.checkpoints import load_fit_checkpoint

        fit = load_fit_checkpoint(path)
        geom, clf = fit.geometry, self.classifier
        if fit.decoder.context_dim != clf.context_dim:
            raise ValueError(
                f"the classifier has context_dim={clf.context_dim} but the ENF of {path} has "
                f"{fit.decoder.context_dim}: set model.classifier.init_args.context_dim"
            )
        if clf.geometry.pose_dim not in (geom.pose_dim, geom.position_dim):
            raise ValueError(
                f"a {clf.geometry.name} classifier cannot read the {geom.name} latents of {path} "
                f"(pose_dim {clf.geometry.pose_dim} vs {geom.pose_dim}); use {geom.name!r} or a positions-only geometry"
            )
        self.fit = fit.module
        self.geometry = geom
        if self.mode == "two_stage":
            self.fit.requires_grad_(False)
        else:
            self.fit.train()  # end to end: the ENF trains too

    def train(self, mode: bool = True):
        super().train(mode)
        if self.fit is not None and self.mode == "two_stage":
            self.fit.eval()  # the ENF stays frozen
        return self

    def _for_classifier(self, z: Latents) -> Latents:
        """The latents as the classifier reads them (positions only for a positions-only geometry)."""
        if self.classifier.geometry.pose_dim == z.poses.shape[-1]:
            return z
        return Latents(poses=z.poses[..., : self.geometry.position_dim], context=z.context, window=z.window)

    @torch.enable_grad()
    def encode(self, batch: Mapping[str, Tensor]) -> Latents:
        """Test-time latents of a batch (the ENF's inner loop, no refinement), detached."""
        return self.fit.encode(batch, train=False, refine=False).detach()

    # ------------------------------------------------------------------------------------ the data
    @property
    def field_kind(self) -> str:
        """``image`` or ``sdf``: the kind of the attached data's fields (others are refused)."""
        kind = self.attached_datamodule("classification").field_spec.kind
        if kind not in ("image", "sdf"):
            raise ValueError(
                f"classification reads labelled images (ImageDataModule) or 3-D shapes (SDFDataModule, "
                f"dataset: primitives), got a {kind!r} field"
            )
        return kind

    def _examples(self, batch: Mapping[str, Tensor]) -> Tensor:
        """What a figure shows of each field: images ``[B, H, W, C]`` or surface points ``[B, Q, 3]``."""
        return self._images(batch) if self.field_kind == "image" else batch[keys.SURFACE]

    def _images(self, batch: Mapping[str, Tensor]) -> Tensor:
        h, w, _ = self.image_shape
        return signal_to_image(batch[keys.SIGNAL], h, w)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        if self._image_shape is None:
            spec = self.attached_datamodule("classification").field_spec
            if spec.kind != "image" or spec.grid_shape is None:
                raise ValueError(
                    f"classification needs image data (ImageDataModule), got a {spec.kind!r} field"
                )
            self._image_shape = (*spec.grid_shape, spec.num_channels)
        return self._image_shape

    def rotated(
        self, batch: Mapping[str, Tensor], *, generator: torch.Generator, kind: str | None = None
    ) -> dict[str, Any]:
        """The batch with every field rotated at random: an image by an angle in ``[0, 2 pi)`` about its
        centre; a 3-D shape by a uniform random rotation about the origin (its sample and surface points).
        ``kind``: ``image`` or ``sdf`` (default: :attr:`field_kind` of the attached data)."""
        if (kind or self.field_kind) == "sdf":
            rotation = random_rotation(
                batch[keys.COORDS].shape[0], 3, generator=generator, dtype=torch.float64
            )
            out = dict(batch)
            for key in (keys.COORDS, keys.SURFACE, keys.HELDOUT_COORDS):
                if key in batch:
                    out[key] = torch.einsum("bij,bnj->bni", rotation.to(batch[key]), batch[key])
            return out
        images = self._images(batch)
        angle = torch.rand(images.shape[0], generator=generator, dtype=torch.float64) * (2 * math.pi)
        out = dict(batch)
        out[keys.SIGNAL] = image_to_signal(rotate_images(images, angle.to(images)))
        return out

    def _labels(self, batch: Mapping[str, Tensor]) -> Tensor:
        if keys.LABEL not in batch:
            raise ValueError(
                "classification needs labelled data: the batches have no 'label' (e.g. dataset: mnist)"
            )
        return batch[keys.LABEL].long()

    def logits(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Latents | None]:
        """Class logits ``[B, K]`` of a batch (and the latents they came from, ``None`` for pixels)."""
        if self.mode == "pixels":
            return self.classifier(self._images(batch)), None
        z = self.encode(batch)
        return self.classifier(self._for_classifier(z)), z

    def _encode_split(self, split: str) -> tuple[Latents, Tensor]:
        """Every latent cloud and label of ``split``, encoded once or read from ``latent_files`` (two-stage)."""
        path = (self.hparams.latent_files or {}).get(split)
        if path is not None and self.field_kind != "image":
            raise ValueError(
                f"model.latent_files are for images: encoding a {self.field_kind!r} field draws random sample "
                "points in every inner step, so a stored file cannot be checked against model.fit_checkpoint; "
                "remove model.latent_files (each run encodes its shapes)"
            )
        if split not in self._cache and path is not None:
            self._cache[split] = load_encoded_split(
                path,
                split=split,
                geometry_name=self.geometry.name,
                loader=self.attached_datamodule("encoding").eval_dataloader(split),
                encode=self.encode,
                device=self.device,
            )
            log.info("read the %s split from %s: %d latent clouds", split, path, len(self._cache[split][1]))
        if split not in self._cache:
            loader = self.attached_datamodule("encoding").eval_dataloader(split)
            clouds, labels = [], []
            for batch in self.progress(loader, desc=f"encoding {split}"):
                batch = move_batch(batch, self.device)
                clouds.append(self.encode(batch))
                labels.append(self._labels(batch))
            z = Latents(
                poses=torch.cat([c.poses for c in clouds]),
                context=torch.cat([c.context for c in clouds]),
                window=torch.cat([c.window for c in clouds]),
            )
            self._cache[split] = (z, torch.cat(labels))
            log.info("encoded the %s split: %d latent clouds", split, len(self._cache[split][1]))
        return self._cache[split]

    def on_fit_start(self) -> None:
        if self.mode == "pixels":
            return
        if self.mode == "two_stage":
            z, _ = self._encode_split("train")
        else:  # standardisation statistics from the initial ENF's latents of a few training batches
            loader = self.attached_datamodule("encoding").eval_dataloader("train", max_samples=256)
            z = self.encode(move_batch(next(iter(loader)), self.device))
        self.classifier.set_context_statistics(z.context)

    # ---------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        labels = self._labels(batch)
        recon = None
        if self.mode == "pixels":
            logits = self.classifier(self._images(batch))
        elif self.mode == "two_stage":
            cached, _ = self._encode_split("train")
            index = batch[keys.INDEX].to(cached.poses.device)
            z = Latents(poses=cached.poses[index], context=cached.context[index], window=cached.window[index])
            if self.hparams.augment:
                g = self.geometry.sample_group(z.batch_size, dtype=z.poses.dtype, device=z.poses.device)
                z = z.transform(self.geometry, g)
            logits = self.classifier(self._for_classifier(z))
        else:
            z = self.fit.encode(batch, train=True)  # differentiable inner loop on reconstruction only
            coords, signal = self.fit.unpack(batch)
            k = self.fit.num_sampled_coords
            if k is not None and k < coords.shape[1]:
                idx = torch.randperm(coords.shape[1], device=coords.device)[:k]
                coords, signal = coords[:, idx], signal[:, idx]
            recon = self.fit.loss_fn(self.fit.decoder(coords, z), signal).mean()
            logits = self.classifier(self._for_classifier(z))
        loss = F.cross_entropy(logits, labels)
        self.log("train/cross_entropy", loss, prog_bar=True)
        self.log("train/accuracy", (logits.argmax(-1) == labels).float().mean(), prog_bar=True)
        if recon is not None:
            self.log("train/reconstruction", recon)
            loss = loss + self.hparams.recon_weight * recon
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {float(loss.detach())} at step {self.global_step}: lower the lr"
            )
        return loss

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        labels = self._labels(batch)
        # without a validation split of its own the data module validates on test: encode those on the fly
        has_val = getattr(self.attached_datamodule("validation"), "num_val", 0) > 0
        if self.mode == "two_stage" and stage == "val" and has_val:
            cached, _ = self._encode_split("val")
            index = batch[keys.INDEX].to(cached.poses.device)
            z = Latents(poses=cached.poses[index], context=cached.context[index], window=cached.window[index])
            logits = self.classifier(self._for_classifier(z))
        else:
            logits, _ = self.logits(batch)
        self._eval_rows.setdefault(stage, []).append((logits.argmax(-1).detach(), labels))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        rows = self._eval_rows.pop(stage, [])
        if rows:
            pred, labels = (torch.cat(t) for t in zip(*rows, strict=True))
            self.log(
                f"{stage}/accuracy", (pred == labels).float().mean(), sync_dist=True, prog_bar=stage == "val"
            )

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        groups = [{"params": list(self.classifier.parameters()), "lr": self.hparams.lr}]
        if self.mode == "end_to_end":
            groups.append(
                {"params": [p for p in self.fit.parameters() if p.requires_grad], "lr": self.hparams.enf_lr}
            )
        return torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay)

    # -------------------------------------------------------------------------------- evaluation
    @property
    def monitor(self) -> tuple[str, str]:
        return "val/accuracy", "max"

    def predictions(
        self, split: str, *, max_samples: int | None = None, rotate: bool = False
    ) -> dict[str, Tensor]:
        """``pred``, ``label`` ``[M]`` over ``split`` (``rotate``: every field rotated at random, seeded by
        ``seed``), and the first misclassified examples (``examples``: images or surface points, ``poses``)."""
        loader = self.attached_datamodule("evaluation").eval_dataloader(split, max_samples=max_samples)
        generator = torch.Generator().manual_seed(self.hparams.seed + 1)
        preds, labels, wrong_examples, wrong_poses = [], [], [], []
        was_training = self.training
        self.eval()
        try:
            for batch in self.progress(loader, desc=f"classifying {split}{' rotated' if rotate else ''}"):
                batch = move_batch(batch, self.device)
                if rotate:
                    batch = self.rotated(batch, generator=generator)
                with torch.no_grad() if self.mode == "pixels" else torch.enable_grad():
                    logits, z = self.logits(batch)
                pred, label = logits.argmax(-1).detach().cpu(), self._labels(batch).cpu()
                preds.append(pred)
                labels.append(label)
                miss = (pred != label).nonzero().flatten()
                if sum(len(m) for m in wrong_examples) < self.hparams.num_plot_samples and len(miss):
                    wrong_examples.append(self._examples(batch)[miss].cpu())
                    if z is not None:
                        wrong_poses.append(z.poses[miss].detach().cpu())
        finally:
            self.train(was_training)
        out = {"pred": torch.cat(preds), "label": torch.cat(labels)}
        n = self.hparams.num_plot_samples
        if wrong_examples:
            out["examples"] = torch.cat(wrong_examples)[:n]
            out["poses"] = torch.cat(wrong_poses)[:n] if wrong_poses else None
        return out

    def evaluate(self, split: str, *, max_samples: int | None = None) -> dict[str, float]:
        res = self.predictions(split, max_samples=max_samples)
        return {
            "accuracy": float((res["pred"] == res["label"]).float().mean()),
            "num_samples": len(res["label"]),
        }

    def test_metrics(self, *, num_test_eval: int | None) -> dict[str, float]:
        """``accuracy_test``, ``accuracy_test_class<k>``, ``accuracy_test_rotated`` (and its per-class rates),
        ``num_test``; keeps the confusion matrices for :meth:`artifacts`."""
        self._final: dict[str, dict[str, Tensor]] = {}
        metrics: dict[str, float] = {}
        num_rotated = self.hparams.num_rotated_test
        runs = [("test", False, num_test_eval)]
        if num_rotated != 0:
            limit = num_rotated if num_test_eval is None else min(num_rotated or num_test_eval, num_test_eval)
            runs.append(("test_rotated", True, limit))
        for name, rotate, limit in runs:
            res = self.predictions("test", max_samples=limit, rotate=rotate)
            self._final[name] = res
            pred, label = res["pred"], res["label"]
            metrics[f"accuracy_{name}"] = float((pred == label).float().mean())
            for k in range(self.classifier.num_classes):
                mask = label == k
                if mask.any():
                    metrics[f"accuracy_{name}_class{k}"] = float((pred[mask] == k).float().mean())
            if name == "test":
                metrics["num_test"] = len(label)
        return metrics

    def run_metrics(self, *, num_train_eval: int, num_test_eval: int | None) -> dict[str, float]:
        metrics = {"accuracy_train": self.evaluate("train", max_samples=num_train_eval)["accuracy"]}
        metrics["num_train_eval"] = min(
            num_train_eval, len(self.attached_datamodule("evaluation").dataset("train"))
        )
        metrics.update(self.test_metrics(num_test_eval=num_test_eval))
        return metrics

    def figures(self, batch: Mapping[str, Tensor]) -> dict[str, Figure]:
        """Validation figure: the plot batch's fields, their latents and predicted classes."""
        batch = move_batch(batch, self.device)
        with torch.no_grad() if self.mode == "pixels" else torch.enable_grad():
            logits, z = self.logits(batch)
        poses = None if z is None else z.poses.detach().cpu()
        fig = self._plot_examples(self._examples(batch).cpu(), poses, self._labels(batch).cpu(),
                                  logits.argmax(-1).cpu(), title="true -> predicted")  # fmt: skip
        return {"predictions": fig}

    def _plot_examples(
        self, examples: Tensor, poses: Tensor | None, true: Tensor, pred: Tensor, *, title: str
    ):
        from enf.plotting import plot_misclassified, plot_misclassified_shapes

        if self.field_kind == "sdf":
            names = getattr(self.attached_datamodule("figures"), "class_names", None)
            return plot_misclassified_shapes(examples.numpy(), None if poses is None else poses.numpy(),
                                             true.numpy(), pred.numpy(), class_names=names, title=title)  # fmt: skip
        positions = None if poses is None else poses[..., :2].numpy()
        return plot_misclassified(examples.numpy(), positions, true.numpy(), pred.numpy(), title=title)

    def artifacts(self) -> dict[str, Any]:
        from enf.plotting import plot_confusion

        out: dict[str, Any] = {}
        num_classes = self.classifier.num_classes
        for name, res in getattr(self, "_final", {}).items():
            matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
            np.add.at(matrix, (res["label"].numpy(), res["pred"].numpy()), 1)
            acc = float((res["pred"] == res["label"]).float().mean())
            out[f"confusion_{name}.json"] = {"rows_true_columns_predicted": matrix.tolist()}
            out[f"confusion_{name}.png"] = plot_confusion(matrix, title=f"{name}: accuracy {acc:.4f}")
            if "examples" in res:
                wrong = (res["pred"] != res["label"]).nonzero().flatten()[: len(res["examples"])]
                out[f"misclassified_{name}.png"] = self._plot_examples(
                    res["examples"], res["poses"], res["label"][wrong], res["pred"][wrong],
                    title=f"misclassified ({name}): true -> predicted, with the latents",
                )  # fmt: skip
        return out
