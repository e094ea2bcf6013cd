"""The metric code against independent implementations (scikit-learn, torchmetrics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassRecall,
)

from sartm.engine.metrics import ConfusionMatrix, segmentation_metrics

C = 6


def _random_batch(seed: int, *, absent: int | None = None):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, C, (3, 17, 23), generator=gen)
    # Predictions right 60% of the time, so the metrics are far from both 0 and 1.
    noise = torch.randint(0, C, target.shape, generator=gen)
    keep = torch.rand(target.shape, generator=gen) < 0.6
    pred = torch.where(keep, target, noise)
    if absent is not None:  # a class in neither ground truth nor prediction
        target[target == absent] = 0
        pred[pred == absent] = 1
    target[torch.rand(target.shape, generator=gen) < 0.1] = 255  # ignored pixels
    return pred, target


@pytest.mark.parametrize("absent", [None, 4])
def test_matches_sklearn_and_torchmetrics(absent):
    cm = ConfusionMatrix(C)
    preds, targets = [], []
    for seed in range(3):  # accumulated over several batches, like an evaluation loop
        pred, target = _random_batch(seed, absent=absent)
        cm.update(pred, target)
        preds.append(pred)
        targets.append(target)
    pred, target = torch.cat(preds), torch.cat(targets)

    valid = target != 255
    expected_cm = confusion_matrix(
        target[valid].numpy(), pred[valid].numpy(), labels=list(range(C))
    )
    np.testing.assert_array_equal(cm.numpy(), expected_cm)

    ours = cm.compute()
    kw = {"num_classes": C, "ignore_index": 255}
    iou = MulticlassJaccardIndex(average=None, zero_division=0, **kw)(pred, target)
    f1 = MulticlassF1Score(average=None, zero_division=0, **kw)(pred, target)
    recall = MulticlassRecall(average=None, zero_division=0, **kw)(pred, target)
    pixel = MulticlassAccuracy(average="micro", **kw)(pred, target)
    np.testing.assert_allclose(ours["iou"], iou.numpy(), atol=1e-6)
    np.testing.assert_allclose(ours["f1"], f1.numpy(), atol=1e-6)
    np.testing.assert_allclose(ours["acc"], recall.numpy(), atol=1e-6)
    assert ours["pixel_acc"] == pytest.approx(float(pixel), abs=1e-6)
    # Means over ALL classes: an absent class counts 0 and lowers the mean.
    assert ours["miou"] == pytest.approx(float(iou.mean()), abs=1e-6)
    assert ours["mf1"] == pytest.approx(float(f1.mean()), abs=1e-6)
    assert ours["macc"] == pytest.approx(float(recall.mean()), abs=1e-6)
    if absent is not None:
        assert ours["iou"][absent] == 0.0
        assert ours["miou"] == pytest.approx(sum(ours["iou"]) / C)


def test_hand_computed_case():
    # GT:   0 0 1 1     pred: 0 1 1 1   (one ignored pixel at the end)
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1, 1, 1, 2]), torch.tensor([0, 0, 1, 1, 255]))
    m = segmentation_metrics(cm.numpy())
    assert m["iou"] == pytest.approx([1 / 2, 2 / 3, 0.0])
    assert m["acc"] == pytest.approx([1 / 2, 1.0, 0.0])
    assert m["f1"] == pytest.approx([2 / 3, 4 / 5, 0.0])
    assert m["miou"] == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert m["pixel_acc"] == pytest.approx(3 / 4)


def test_rejects_bad_input():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="outside"):
        cm.update(torch.zeros(4), torch.tensor([0, 1, 7, 255]))
