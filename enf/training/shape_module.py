"""``ShapeModule``: the Lightning task of the canonicalising shape VAE, on landmarks or on ENF latent clouds.

    enf shape fit --config configs/shape/trilobite.yaml      # landmarks: loss on the landmarks
    enf shape fit --config configs/shape/mnist.yaml          # ENF latent clouds: loss on the decoded image

Landmark batches (``LandmarkDataModule``): ``positions [B, K, d]``, ``index [B]`` (and ``label [B]``). The
VAE (:class:`~enf.shape.ShapeVAE`, or the non-equivariant :class:`~enf.shape.PlainVAE`) decodes ``K`` points
in the input's pose; the loss is the landmark error relative to the shape's size plus ``beta`` times the KL
divergence of the posterior to its prior.

Latent-cloud batches (``LatentCloudDataModule``, with ``fit_checkpoint`` the ENF that encoded them): the VAE
reads the latent positions with their contexts as invariant features and decodes ``M`` latents: positions
reposed by the predicted pose, contexts, and (se2, se3) orientation vectors decoded in the canonical frame
and turned by the pose. The frozen ENF decodes them at ``num_sampled_coords`` random pixels per step; the
loss is the MSE to the encoded image plus ``beta`` KL.

With labels in the data, ``metrics.json`` also gets a k-nearest-neighbour classification of the codes
(train codes as the reference set) on every evaluation split: ``knn_accuracy_<split>``,
``knn_accuracy_merged_<split>`` (classes of ``merge_classes`` counted as one, e.g. 6 and 9) and, for a
``pose_pair`` of classes and a VAE with a pose, ``pose_pair_accuracy_<split>``: how well the pose alone
(kNN on the frame angle) tells those two classes apart.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from matplotlib.figure import Figure
from torch import Tensor

from enf.data import keys
from enf.latents import Latents
from enf.metrics import knn_accuracy, per_sample_mse, psnr
from enf.shape import PlainVAE, ShapeVAE
from enf.shape.vae import ShapeVAEOutput
from enf.training.task import TaskModule, move_batch

__all__ = ["ShapeModule", "random_similarity", "relative_error"]


def random_similarity(batch: int, d: int, *, generator: torch.Generator, dtype=torch.float64):
    """``x -> s x R + t`` on row vectors, ``R`` uniform in SO(d), ``s`` in [0.5, 2], ``t`` standard normal."""
    q, r = torch.linalg.qr(torch.randn(batch, d, d, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    flip = torch.linalg.det(q) < 0
    q = torch.cat([torch.where(flip[:, None, None], -q[..., :1], q[..., :1]), q[..., 1:]], dim=-1)
    s = torch.exp(math.log(2.0) * (2 * torch.rand(batch, generator=generator, dtype=torch.float64) - 1))
    t = torch.randn(batch, d, generator=generator, dtype=torch.float64)
    q, s, t = q.to(dtype), s.to(dtype), t.to(dtype)
    return lambda x: s[:, None, None] * x @ q + t[:, None, :]


def relative_error(pred: Tensor, target: Tensor) -> Tensor:
    """``|pred - target|^2 / |target - centroid|^2`` per shape ``[B]``: the error relative to the size."""
    size = (target - target.mean(-2, keepdim=True)).square().sum((-2, -1))
    return (pred - target).square().sum((-2, -1)) / size.clamp_min(1e-12)


class ShapeModule(TaskModule):
    """Train and evaluate a shape VAE on landmark shapes or on the latent point clouds of a trained ENF.

    Args:
        vae: the model, :class:`~enf.shape.ShapeVAE` or :class:`~enf.shape.PlainVAE`. Landmarks:
            ``num_out_points`` = the data's K, ``space_dim`` = its d. Latent clouds: ``feature_dim`` = the
            ENF's context width, ``out_feature_dim`` = context width + orientation size (se2: 2).
        fit_checkpoint: the ``enf fit`` checkpoint whose latents the data holds; given, the task is the latent
            cloud one with the loss on the decoded signal (the ENF is frozen and saved with this model).
        num_sampled_coords: pixels per signal in each training step of the latent-cloud task (``None``: all).
        beta: weight of the KL term.
        lr, weight_decay: AdamW.
        knn_k: neighbours of the code classification.
        merge_classes: groups of labels counted as one class in ``knn_accuracy_merged_*``.
        pose_pair: two labels told apart by the pose alone in ``pose_pair_accuracy_*``.
        num_plot_samples: shapes drawn in each figure.
    """

    run_prefix = "shape_"

    def __init__(
        self,
        *,
        vae: ShapeVAE | PlainVAE,
        fit_checkpoint: str | None = None,
        num_sampled_coords: int | None = 256,
        beta: float = 1e-3,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        knn_k: int = 5,
        merge_classes: list[list[int]] | None = None,
        pose_pair: list[int] | None = None,
        num_plot_samples: int = 8,
    ) -> None:
        super().__init__()
        if not isinstance(vae, ShapeVAE | PlainVAE):
            raise TypeError(f"vae must be an enf.shape.ShapeVAE or PlainVAE, got {type(vae).__name__}")
        if not (beta >= 0 and math.isfinite(beta)):
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if num_sampled_coords is not None and num_sampled_coords < 1:
            raise ValueError(f"num_sampled_coords must be None or >= 1, got {num_sampled_coords}")
        if isinstance(knn_k, bool) or not isinstance(knn_k, int) or knn_k < 1:
            raise ValueError(f"knn_k must be an int >= 1, got {knn_k!r}")
        if pose_pair is not None and len(pose_pair) != 2:
            raise ValueError(f"pose_pair must name two classes, got {pose_pair!r}")
        # Under the CLI the hyperparameters are the config dict of the VAE (so load_from_checkpoint rebuilds it);
        # built in code, the object itself is not stored (pass it again to load).
        self.save_hyperparameters(ignore=[] if _given_hyperparameters.get() is not None else ["vae"])
        self.vae = vae
        self.enf = None
        if fit_checkpoint is not None:
            self._attach_enf(fit_checkpoint)

    def _attach_enf(self, path: str) -> None:
        from enf.training.checkpoints import load_fit_checkpoint

        fit = load_fit_checkpoint(path)
        geom, v = fit.geometry, self.vae
        orientation_dim = geom.pose_dim - geom.position_dim
        context_dim = fit.decoder.context_dim
        want = {"space_dim": geom.position_dim, "feature_dim": context_dim,
                "out_feature_dim": context_dim + orientation_dim}  # fmt: skip
        wrong = {k: (getattr(v, k), w) for k, w in want.items() if getattr(v, k) != w}
        if wrong:
            detail = ", ".join(f"{k}={got} (needs {w})" for k, (got, w) in wrong.items())
            raise ValueError(
                f"the VAE does not match the {geom.name} ENF of {path}: {detail}; set model.vae.init_args accordingly"
            )
        self.enf = fit.decoder
        self.enf.requires_grad_(False)
        self.enf.eval()
        self.geometry = geom
        self.context_dim = context_dim
        # Meta-SGD contexts sit close to their shared initial value (MNIST: 1.0, std 0.07) and the ENF is
        # sensitive to those small offsets: the VAE reads and writes them standardised per channel, with the
        # training split's statistics (set in setup("fit"), saved with the model).
        self.register_buffer("context_mean", torch.zeros(context_dim))
        self.register_buffer("context_std", torch.ones(context_dim))

    def setup(self, stage: str) -> None:
        if stage != "fit" or not self.field_task:
            return
        data = self.attached_datamodule("setup").dataset("train")
        if not hasattr(data, "context"):
            raise ValueError(
                "model.fit_checkpoint is set, so the data must be ENF latent clouds (enf.data.LatentCloudDataModule "
                f"over `enf encode --store-signal` files), got {type(data).__name__}"
            )
        if getattr(data, "geometry", self.geometry.name) != self.geometry.name:
            raise ValueError(
                f"the latents were encoded by a {data.geometry} model but model.fit_checkpoint is a "
                f"{self.geometry.name} ENF: encode the data with that checkpoint"
            )
        context = torch.as_tensor(data.context, dtype=torch.float64).reshape(-1, self.context_dim)
        self.context_mean.copy_(context.mean(0))
        self.context_std.copy_(context.std(0).clamp_min(1e-6))

    @property
    def field_task(self) -> bool:
        """``True`` for latent clouds decoded through the frozen ENF, ``False`` for landmarks."""
        return self.enf is not None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.enf is not None:
            self.enf.eval()  # the ENF stays frozen
        return self

    # ------------------------------------------------------------------------------------ protocol
    @property
    def monitor(self) -> tuple[str, str]:
        return ("val/mse", "min") if self.field_task else ("val/rel_mse", "min")

    def unpack(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The model's inputs of a batch, checked: ``positions [B, N, d]`` (and for latent clouds ``features``
        (the contexts, standardised), ``window``, ``coords``, ``signal``)."""
        if keys.POSITIONS not in batch:
            raise ValueError(
                f"the shape task needs batches with {keys.POSITIONS!r} (a LandmarkDataModule or LatentCloudDataModule)"
            )
        x, v = batch[keys.POSITIONS], self.vae
        if not self.field_task:
            if keys.CONTEXT in batch:
                raise ValueError(
                    "these batches hold ENF latent clouds: set model.fit_checkpoint to the `enf fit` checkpoint "
                    "that encoded them"
                )
            if x.ndim != 3 or x.shape[1:] != (v.num_out_points, v.space_dim):
                raise ValueError(
                    f"positions are {tuple(x.shape)} but the VAE decodes [B, {v.num_out_points}, {v.space_dim}]: set "
                    f"model.vae.init_args.num_out_points / space_dim to the data's K and d"
                )
            return {"positions": x}
        missing = [k for k in (keys.CONTEXT, keys.WINDOW, keys.COORDS, keys.SIGNAL) if k not in batch]
        if missing:
            raise ValueError(
                f"latent-cloud batches need {missing} (write them with `enf encode --store-signal`)"
            )
        if batch[keys.CONTEXT].shape[-1] != self.context_dim:
            raise ValueError(
                f"the latents have context width {batch[keys.CONTEXT].shape[-1]} but the ENF of "
                f"model.fit_checkpoint has {self.context_dim}: encode the data with that checkpoint"
            )
        features = self.standardise(batch[keys.CONTEXT])
        return {"positions": x, "features": features, "window": batch[keys.WINDOW],
                "coords": batch[keys.COORDS], "signal": batch[keys.SIGNAL]}  # fmt: skip

    def standardise(self, context: Tensor) -> Tensor:
        """ENF contexts ``[B, L, F]`` as the VAE reads them: per channel, with the training split's statistics."""
        return (context - self.context_mean) / self.context_std

    def encode_cloud(
        self, positions: Tensor, context: Tensor | None = None, *, sample: bool = False
    ) -> ShapeVAEOutput:
        """The VAE on a latent cloud given as stored by ``enf encode``: ``positions [B, L, d]`` and raw ENF
        ``context [B, L, F]`` (standardised here); landmarks: ``positions`` only. Posterior mean by default."""
        if self.field_task:
            if context is None:
                raise ValueError("the latent-cloud task needs the ENF contexts")
            context = self.standardise(context)
        return self.vae(positions, context, sample=sample)

    def latents(self, out: ShapeVAEOutput, window: Tensor) -> Latents:
        """The ENF latents a VAE output decodes to: reposed positions, orientation vectors turned by the pose,
        contexts (un-standardised), and each input's mean window."""
        c = self.context_dim
        poses = out.points
        if out.features.shape[-1] > c:
            poses = torch.cat([poses, out.pose_vectors(out.features[..., c:])], dim=-1)
        w = window.mean(dim=(1, 2), keepdim=True).expand(-1, poses.shape[1], 1)
        context = self.context_mean + self.context_std * out.features[..., :c]
        return Latents(poses=poses, context=context, window=w.contiguous())

    def decode_field(self, out: ShapeVAEOutput, inputs: Mapping[str, Tensor], coords: Tensor) -> Tensor:
        return self.enf(coords, self.latents(out, inputs["window"]))

    @torch.no_grad()
    def render(self, code: Tensor, encoding, window: Tensor, coords: Tensor) -> Tensor:
        """The signal ``[B, N, C]`` at ``coords [B, N, d]`` of codes ``[B, D]`` (prior samples, points of a
        geodesic) decoded in the pose of ``encoding`` (a :class:`~enf.shape.ShapeEncoding`; ``None`` for a
        :class:`~enf.shape.PlainVAE`), with the windows of ``window [B, L, 1]``. Latent-cloud task only."""
        if not self.field_task:
            raise ValueError("render needs the latent-cloud task (a model trained with fit_checkpoint)")
        canonical, features = self.vae.decode(code)
        points = canonical if encoding is None else encoding.repose(canonical)
        out = ShapeVAEOutput(encoding=encoding, posterior=None, code=code, canonical=canonical, points=points,
                             features=features, kl=None)  # fmt: skip
        return self.enf(coords, self.latents(out, window))

    def _losses(
        self, inputs: Mapping[str, Tensor], *, sample: bool, subset: bool = False
    ) -> dict[str, Tensor]:
        out = self.vae(inputs["positions"], inputs.get("features"), sample=sample)
        if not self.field_task:
            rel = relative_error(out.points, inputs["positions"])
            return {"rel_mse": rel, "kl": out.kl, "loss": rel + self.hparams.beta * out.kl}
        coords, signal = inputs["coords"], inputs["signal"]
        k = self.hparams.num_sampled_coords
        if subset and k is not None and k < coords.shape[1]:
            idx = torch.randperm(coords.shape[1], device=coords.device)[:k]
            coords, signal = coords[:, idx], signal[:, idx]
        pred = self.decode_field(out, inputs, coords)
        mse = per_sample_mse(pred, signal)
        return {
            "mse": mse,
            "psnr": psnr(pred, signal),
            "kl": out.kl,
            "loss": mse + self.hparams.beta * out.kl,
        }

    @torch.no_grad()
    def codes(self, split: str, *, max_samples: int | None = None) -> dict[str, Tensor]:
        """``code [S, D]`` (posterior mean), ``label [S]`` (where the data has labels) and, for a VAE with a
        pose, ``rotation [S, d, d]`` of every shape of ``split``."""
        datamodule = self.attached_datamodule(f"codes({split!r})")
        rows: dict[str, list[Tensor]] = {}
        for batch in datamodule.eval_dataloader(split, max_samples=max_samples):
            batch = move_batch(batch, self.device)
            inputs = self.unpack(batch)
            out = self.vae(inputs["positions"], inputs.get("features"), sample=False)
            found = {"code": out.code}
            if out.encoding is not None:
                found["rotation"] = out.encoding.rotation
            if keys.LABEL in batch:
                found[keys.LABEL] = batch[keys.LABEL]
            for name, value in found.items():
                rows.setdefault(name, []).append(value.cpu())
        return {name: torch.cat(v) for name, v in rows.items()}

    @torch.no_grad()
    def evaluate(self, split: str, *, max_samples: int | None = None) -> dict[str, float]:
        """Mean reconstruction error (landmarks: relative; latent clouds: MSE and PSNR of the decoded signal, at
        every point) and KL on ``split`` with the posterior mean code, and the equivariance error:
        ``max |code(g X) - code(X)|`` over one random similarity per shape (features unchanged), float64."""
        datamodule = self.attached_datamodule(f"evaluate({split!r})")
        vae64 = copy.deepcopy(self.vae).double().eval()
        gen = torch.Generator().manual_seed(0)
        rows: dict[str, list[Tensor]] = {}
        eq, seen = 0.0, 0
        for batch in datamodule.eval_dataloader(split, max_samples=max_samples):
            inputs = self.unpack(move_batch(batch, self.device))
            for name, value in self._losses(inputs, sample=False).items():
                if name != "loss":
                    rows.setdefault(name, []).append(value.cpu())
            x64 = inputs["positions"].double()
            f64 = None if inputs.get("features") is None else inputs["features"].double()
            g = random_similarity(x64.shape[0], x64.shape[-1], generator=gen)
            code = vae64(x64, f64, sample=False).code
            moved = vae64(g(x64.cpu()).to(self.device), f64, sample=False).code
            eq = max(eq, float((moved - code).abs().max()))
            seen += x64.shape[0]
        if seen == 0:
            raise ValueError(f"evaluate({split!r}) got an empty data loader")
        out = {name: float(torch.cat(v).mean()) for name, v in rows.items()}
        out.update(equivariance_error=eq, num_samples=float(seen))
        return out

    def run_metrics(self, *, num_train_eval: int, num_test_eval: int | None) -> dict[str, float]:
        """The base metrics, the same numbers on every extra evaluation split of the data module (e.g.
        ``mse_test_rotated``, ``equivariance_error_test_rotated``) and, with labels, the kNN accuracies."""
        metrics = super().run_metrics(num_train_eval=num_train_eval, num_test_eval=num_test_eval)
        datamodule = self.attached_datamodule("run_metrics")
        extra = [s for s in datamodule.eval_splits if s not in ("train", "test")]
        for split in extra:
            found = self.evaluate(split, max_samples=num_test_eval)
            found.pop("num_samples")
            metrics.update({self.metric_key(k, split): v for k, v in found.items()})
        metrics.update(self.classification_metrics(("test", *extra), max_samples=num_test_eval))
        return metrics

    def test_metrics(self, *, num_test_eval: int | None) -> dict[str, float]:
        metrics = super().test_metrics(num_test_eval=num_test_eval)
        metrics.update(self.classification_metrics(("test",), max_samples=num_test_eval))
        return metrics

    @torch.no_grad()
    def classification_metrics(self, splits, *, max_samples: int | None = None) -> dict[str, float]:
        """kNN accuracies of the codes of ``splits`` against the training codes (empty without labels)."""
        reference = self.codes("train")
        if keys.LABEL not in reference:
            return {}
        hp = self.hparams
        merge = {int(c): min(int(m) for m in group) for group in (hp.merge_classes or []) for c in group}

        def merged(labels: Tensor) -> Tensor:
            return labels.clone().apply_(lambda c: merge.get(c, c)) if merge else labels

        out: dict[str, float] = {}
        for split in splits:
            query = self.codes(split, max_samples=max_samples)
            ref_x, ref_y, q_x, q_y = (
                reference["code"],
                reference[keys.LABEL],
                query["code"],
                query[keys.LABEL],
            )
            out[f"knn_accuracy_{split}"] = knn_accuracy(ref_x, ref_y, q_x, q_y, k=hp.knn_k)
            if merge:
                out[f"knn_accuracy_merged_{split}"] = knn_accuracy(
                    ref_x, merged(ref_y), q_x, merged(q_y), k=hp.knn_k
                )
            if hp.pose_pair is not None and "rotation" in query and query["rotation"].shape[-1] == 2:
                pair = torch.tensor(hp.pose_pair)
                ref_sel, q_sel = torch.isin(ref_y, pair), torch.isin(q_y, pair)
                if ref_sel.any() and q_sel.any():
                    angle = lambda r: r[:, :, 0]  # noqa: E731  the frame's first axis (cos, sin)
                    out[f"pose_pair_accuracy_{split}"] = knn_accuracy(
                        angle(reference["rotation"][ref_sel]), ref_y[ref_sel],
                        angle(query["rotation"][q_sel]), q_y[q_sel], k=hp.knn_k,
                    )  # fmt: skip
        return out

    @torch.no_grad()
    def figures(self, batch: Mapping[str, Tensor]) -> dict[str, Figure]:
        """``{"shapes": Figure}``: input and reconstruction (top), canonical symbols (bottom)."""
        from enf.plotting.shapes import shape_figure

        inputs = {
            k: v[: self.hparams.num_plot_samples]
            for k, v in self.unpack(move_batch(batch, self.device)).items()
        }
        out = self.vae(inputs["positions"], inputs.get("features"), sample=False)
        field = None
        if self.field_task:
            spec = self.attached_datamodule("figures").field_spec
            field = (self.decode_field(out, inputs, inputs["coords"]), inputs["signal"], spec)
        return {"shapes": shape_figure(inputs["positions"], out, field=field)}

    # ------------------------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        inputs = self.unpack(batch)
        losses = {k: v.mean() for k, v in self._losses(inputs, sample=True, subset=True).items()}
        for name, value in losses.items():
            self.log(f"train/{name}", value, prog_bar=name == "loss", batch_size=inputs["positions"].shape[0])
        return losses["loss"]

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        inputs = self.unpack(batch)
        losses = self._losses(inputs, sample=False)
        size = inputs["positions"].shape[0]
        for name, value in losses.items():
            if name != "loss":
                self.log(
                    f"{stage}/{name}", value.mean(), sync_dist=True, prog_bar=stage == "val", batch_size=size
                )

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.AdamW(
            self.vae.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

    def artifacts(self) -> dict[str, Any]:
        return {}
