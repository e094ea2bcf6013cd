"""Segmentation metrics from one confusion matrix per split (docs/method.md section 5).

The matrix is accumulated on the device the predictions live on (one `bincount` per batch, no
host round trip) and reduced across processes once at the end. Means run over ALL classes: a
class with no pixels in the ground truth or the prediction scores 0, like the authors' metric
(so it lowers mIoU instead of being skipped).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from sartm.data.spec import IGNORE_INDEX


class ConfusionMatrix:
    """Rows: ground truth, columns: prediction; pixels labelled `ignore_index` are not counted."""

    def __init__(
        self,
        num_classes: int,
        *,
        device: torch.device | str = "cpu",
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of predicted class ids and labels of the same shape."""
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} != label shape {tuple(target.shape)}"
            )
        pred = pred.reshape(-1).to(self.matrix.device, torch.int64)
        target = target.reshape(-1).to(self.matrix.device, torch.int64)
        valid = target != self.ignore_index
        if not bool(((target[valid] >= 0) & (target[valid] < self.num_classes)).all()):
            raise ValueError(
                f"label values outside 0..{self.num_classes - 1} (and {self.ignore_index})"
            )
        index = target[valid] * self.num_classes + pred[valid]
        counts = torch.bincount(index, minlength=self.num_classes**2)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)

    def all_reduce(self) -> None:
        """Sum the matrices of every process (no-op outside torch.distributed)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix)

    def numpy(self) -> np.ndarray:
        return self.matrix.cpu().numpy()

    def compute(self) -> dict[str, float | list[float]]:
        return segmentation_metrics(self.numpy())


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den is 0 (a class absent from GT and prediction scores 0)."""
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def segmentation_metrics(confusion: np.ndarray) -> dict[str, float | list[float]]:
    """Per-class IoU / accuracy (recall) / F1 and their means over all classes, pixel accuracy."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    iou = _safe_div(tp, gt + pred - tp)
    acc = _safe_div(tp, gt)
    f1 = _safe_div(2 * tp, gt + pred)
    total = cm.sum()
    return {
        "miou": float(iou.mean()),
        "macc": float(acc.mean()),
        "mf1": float(f1.mean()),
        "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
        "iou": iou.tolist(),
        "acc": acc.tolist(),
        "f1": f1.tolist(),
    }
