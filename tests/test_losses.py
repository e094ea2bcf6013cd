"""Losses: hand-computed cases, plain-loop references, EMA numerics, and what w = 0 removes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sartm import config as cfgmod
from sartm import losses
from sartm.losses import (
    NonFiniteLossError,
    SARTMLoss,
    class_prototypes,
    loss_cr,
    loss_se,
    ohem_cross_entropy,
    plain_cross_entropy,
    similarity_matrices,
)

THRESH = -math.log(0.7)


def logits_with_losses(pixel_losses: list[float]) -> torch.Tensor:
    """Two-class logits (1, 2, 1, N) whose CE against label 0 is exactly `pixel_losses`.

    CE of [0, z] against class 0 is log(1 + e^z), so z = log(e^L - 1).
    """
    z = torch.tensor([math.log(math.expm1(v)) for v in pixel_losses], dtype=torch.float64)
    return torch.stack([torch.zeros_like(z), z])[None, :, None, :]


def zeros_label(n: int) -> torch.Tensor:
    return torch.zeros(1, 1, n, dtype=torch.long)


def test_ohem_keeps_pixels_above_threshold():
    # 32 valid pixels -> at least 2 kept; 3 exceed -log(0.7) = 0.357, so the threshold decides.
    values = [0.1] * 28 + [0.2, 0.5, 1.0, 2.0]
    loss = ohem_cross_entropy(logits_with_losses(values), zeros_label(32))
    assert loss.item() == pytest.approx((0.5 + 1.0 + 2.0) / 3)


def test_ohem_falls_back_to_top_k_when_too_few_hard_pixels():
    # only 1.0 is hard, but n_valid / 16 = 2 pixels must be kept: the two largest, 1.0 and 0.2.
    values = [0.1] * 30 + [0.2, 1.0]
    loss = ohem_cross_entropy(logits_with_losses(values), zeros_label(32))
    assert loss.item() == pytest.approx(0.6)


def test_ohem_gradient_reaches_only_kept_pixels():
    values = [0.1] * 28 + [0.2, 0.5, 1.0, 2.0]
    logits = logits_with_losses(values).requires_grad_(True)
    ohem_cross_entropy(logits, zeros_label(32)).backward()
    touched = logits.grad.abs().sum(dim=1).flatten() > 0
    assert touched.nonzero().flatten().tolist() == [29, 30, 31]


def test_ohem_ignored_pixels_neither_count_nor_contribute():
    values = [0.1] * 30 + [0.2, 1.0]
    hard_ignored = logits_with_losses([5.0] * 32)
    logits = torch.cat([logits_with_losses(values), hard_ignored], dim=-1)
    label = torch.cat([zeros_label(32), torch.full((1, 1, 32), 255)], dim=-1)
    # Were the 32 ignored pixels counted, n_valid / 16 = 4 and the top-4 mean would be 0.35.
    assert ohem_cross_entropy(logits, label).item() == pytest.approx(0.6)


def test_ohem_min_kept_larger_than_valid_keeps_all():
    values = [0.1, 0.2, 0.3, 2.0]
    loss = ohem_cross_entropy(logits_with_losses(values), zeros_label(4), min_kept_fraction=4.0)
    assert loss.item() == pytest.approx(sum(values) / 4)


def test_ohem_keeps_at_least_one_pixel():
    # 4 pixels, 4 / 16 rounds to 0, nothing is hard: the single largest loss is kept.
    values = [0.1, 0.2, 0.3, 0.05]
    assert ohem_cross_entropy(logits_with_losses(values), zeros_label(4)).item() == pytest.approx(
        0.3
    )


@pytest.mark.parametrize("fn", [ohem_cross_entropy, plain_cross_entropy])
def test_no_valid_pixel_gives_zero_with_a_gradient_path(fn):
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = fn(logits, torch.full((2, 4, 4), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def reference_ohem(logits, label, threshold=0.7, fraction=1 / 16, ignore=255):
    """Straightforward loops: per-pixel CE, threshold, else the k largest."""
    b, c, h, w = logits.shape
    pixel = []
    for i in range(b):
        for y in range(h):
            for x in range(w):
                t = int(label[i, y, x])
                if t == ignore:
                    continue
                row = [float(logits[i, j, y, x]) for j in range(c)]
                m = max(row)
                lse = m + math.log(sum(math.exp(v - m) for v in row))
                pixel.append(lse - row[t])
    k = min(len(pixel), max(1, int(len(pixel) * fraction)))
    hard = [v for v in pixel if v > -math.log(threshold)]
    if len(hard) < k:
        hard = sorted(pixel, reverse=True)[:k]
    return sum(hard) / len(hard)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ohem_matches_a_loop_reference_on_random_data(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 6, 5, generator=g, dtype=torch.float64) * (seed + 1)
    label = torch.randint(0, 4, (2, 6, 5), generator=g)
    label[torch.rand(2, 6, 5, generator=g) < 0.2] = 255
    got = ohem_cross_entropy(logits, label, min_kept_fraction=0.3).item()
    assert got == pytest.approx(reference_ohem(logits, label, fraction=0.3), rel=1e-9)


@pytest.mark.parametrize("fraction", [0.05, 0.9])  # mostly hard pixels / the top-k branch
def test_ohem_gradient_equals_the_boolean_indexing_formula(fraction):
    """The mask-based implementation (dense gradient, one host sync) computes the same function
    as the obvious boolean-indexing one, gradient included."""
    g = torch.Generator().manual_seed(7)
    base = torch.randn(2, 5, 8, 7, generator=g, dtype=torch.float64) * 2
    label = torch.randint(0, 5, (2, 8, 7), generator=g)
    label[torch.rand(2, 8, 7, generator=g) < 0.25] = 255

    def indexing_formula(logits):
        pixel = F.cross_entropy(logits, label, ignore_index=255, reduction="none").flatten()
        pixel = pixel[label.flatten() != 255]
        hard = pixel[pixel > THRESH]
        k = min(pixel.numel(), max(1, int(pixel.numel() * fraction)))
        return (hard if hard.numel() >= k else pixel.topk(k).values).mean()

    grads = []
    for fn in (
        lambda x: ohem_cross_entropy(x, label, min_kept_fraction=fraction),
        indexing_formula,
    ):
        logits = base.clone().requires_grad_(True)
        loss = fn(logits)
        loss.backward()
        grads.append((loss.detach(), logits.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-10, atol=1e-15)
    assert grads[0][1].abs().sum() > 0


def test_plain_cross_entropy_is_the_mean_over_valid_pixels():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    label = torch.randint(0, 3, (2, 4, 4), generator=g)
    label[0, 0] = 255
    valid = label != 255
    per_pixel = -F.log_softmax(logits, 1).gather(1, label.clamp(max=2)[:, None])[:, 0]
    expected = per_pixel[valid].mean()
    assert plain_cross_entropy(logits, label).item() == pytest.approx(expected.item(), rel=1e-6)


def test_prototypes_hand_case_absent_classes_and_ignore():
    # features (1, 2, 2, 2); the label (4, 4) is resized by nearest neighbour to (2, 2),
    # which reads label[0, 0], label[0, 2], label[2, 0], label[2, 2].
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[10.0, 20.0], [30.0, 40.0]]]])
    label = torch.full((1, 4, 4), 7)  # 7 is never sampled
    label[0, 0, 0], label[0, 0, 2], label[0, 2, 0], label[0, 2, 2] = 0, 3, 0, 255
    protos, present = class_prototypes(features, label, num_classes=8)
    assert present.tolist() == [0, 3]  # classes 1, 2, 4-7 absent; the ignored pixel dropped
    torch.testing.assert_close(protos, torch.tensor([[2.0, 20.0], [2.0, 20.0]]))


def reference_prototypes(features, label, num_classes, ignore=255):
    """Loops: nearest-resized label, then a per-class feature mean over the pixels of that class."""
    b, d, h, w = features.shape
    small = F.interpolate(label[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
    sums = {c: torch.zeros(d, dtype=torch.float64) for c in range(num_classes)}
    counts = dict.fromkeys(range(num_classes), 0)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                c = int(small[i, y, x])
                if c != ignore:
                    sums[c] += features[i, :, y, x].double()
                    counts[c] += 1
    ids = [c for c in range(num_classes) if counts[c] > 0]
    return torch.stack([sums[c] / counts[c] for c in ids]).float(), ids


def test_prototypes_match_a_loop_reference_on_random_data():
    g = torch.Generator().manual_seed(5)
    features = torch.randn(3, 6, 4, 5, generator=g)
    label = torch.randint(0, 5, (3, 16, 20), generator=g)  # class 5 of 6 never occurs
    label[:, :4] = 255
    protos, present = class_prototypes(features, label, num_classes=6)
    want, ids = reference_prototypes(features, label, 6)
    assert present.tolist() == ids and 5 not in ids
    torch.testing.assert_close(protos, want)


def kl_by_hand(student: list[list[float]], teacher: list[list[float]]) -> float:
    """mean over elements of q * (log q - log p), p = softmax(student), q = softmax(teacher)."""
    total, n = 0.0, 0
    for s_row, t_row in zip(student, teacher):
        zs = sum(math.exp(v) for v in s_row)
        zt = sum(math.exp(v) for v in t_row)
        for s, t in zip(s_row, t_row):
            q = math.exp(t) / zt
            total += q * (math.log(q) - (s - math.log(zs)))
            n += 1
    return total / n


def test_loss_se_hand_case_and_direction():
    protos = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # cosine 1/sqrt(2)
    text = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # cosine 0
    c = 1 / math.sqrt(2)
    v, t = [[1.0, c], [c, 1.0]], [[1.0, 0.0], [0.0, 1.0]]
    got = loss_se(protos, text).item()
    assert got == pytest.approx(kl_by_hand(v, t), rel=1e-5)  # float32
    assert got != pytest.approx(kl_by_hand(t, v), rel=1e-3)  # the argument order matters
    assert loss_se(text[:, :2], text).item() == pytest.approx(0.0, abs=1e-7)


def test_loss_cr_hand_case():
    p = torch.tensor([[0.0, 1.0, 2.0], [1.0, -1.0, 0.5]])
    g = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 3.0]])
    assert loss_cr(p, g).item() == pytest.approx(kl_by_hand(p.tolist(), g.tolist()), rel=1e-5)
    assert loss_cr(p, g).item() != pytest.approx(kl_by_hand(g.tolist(), p.tolist()), rel=1e-3)


def loss_cfg(**overrides) -> cfgmod.LossConfig:
    """The real `loss` section of params.yaml (the full run), with --set style overrides."""
    params = cfgmod.load_params(cfgmod.PROJECT_ROOT / "params.yaml")
    sets = [f"loss.{k}={v}" for k, v in overrides.items()]
    return cfgmod.resolve(params, dataset="pst900", run="full", overrides=sets).loss


def batch(num_classes=4, d=8, seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    outputs = {
        "s0": torch.randn(2, num_classes, size, size, generator=g, requires_grad=True),
        "s1": torch.randn(2, num_classes, size, size, generator=g, requires_grad=True),
        "sfm": torch.randn(2, d, size // 4, size // 4, generator=g, requires_grad=True),
    }
    label = torch.randint(0, num_classes, (2, size, size), generator=g)
    return outputs, label


def text_embeddings(num_classes=4, dim=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(num_classes, dim, generator=g), dim=-1)


def test_sartm_loss_is_the_weighted_sum_of_unweighted_terms():
    cfg = loss_cfg()
    crit = SARTMLoss(cfg, num_classes=4, feat_dim=8, text_embeddings=text_embeddings())
    outputs, label = batch()
    total, terms = crit(outputs, label)
    assert list(terms) == ["ce_s0", "ce_s1", "l_cr", "l_se"]
    assert all(not t.requires_grad for t in terms.values())
    expected = (
        cfg.w0 * terms["ce_s0"]
        + cfg.w1 * terms["ce_s1"]
        + cfg.w2 * terms["l_cr"]
        + cfg.w3 * terms["l_se"]
    )
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms["ce_s0"].item() == pytest.approx(ohem_cross_entropy(outputs["s0"], label).item())
    total.backward()
    assert all(torch.count_nonzero(outputs[k].grad) > 0 for k in ("s0", "s1", "sfm"))


def test_ce_choice_plain():
    crit = SARTMLoss(loss_cfg(ce="plain", w1=0, w2=0, w3=0), num_classes=4, feat_dim=8)
    outputs, label = batch()
    total, terms = crit(outputs, label)
    assert list(terms) == ["ce_s0"]
    assert total.item() == pytest.approx(F.cross_entropy(outputs["s0"], label).item(), rel=1e-6)


def test_ema_update_over_two_steps():
    crit = SARTMLoss(loss_cfg(w3=0), num_classes=4, feat_dim=8).train()
    m = 0.9
    assert crit.momentum == m
    torch.testing.assert_close(crit.global_prototypes, torch.zeros(4, 8))

    out1, label1 = batch(seed=1)
    label1[label1 == 1] = 0  # class 1 absent in step 1
    p1, present1 = class_prototypes(out1["sfm"], label1, 4)
    _, terms1 = crit(out1, label1)
    g1 = torch.zeros(4, 8)
    g1[present1] = (1 - m) * p1.detach()
    torch.testing.assert_close(crit.global_prototypes, g1)
    assert 1 not in present1.tolist() and torch.count_nonzero(crit.global_prototypes[1]) == 0
    # the update happens before the loss: L_cr compares P with the updated G
    assert terms1["l_cr"].item() == pytest.approx(loss_cr(p1, g1[present1]).item(), rel=1e-6)

    out2, label2 = batch(seed=2)
    label2[label2 == 3] = 2  # class 3 absent in step 2: its row must stay as it was
    p2, present2 = class_prototypes(out2["sfm"], label2, 4)
    crit(out2, label2)
    g2 = g1.clone()
    g2[present2] = m * g1[present2] + (1 - m) * p2.detach()
    torch.testing.assert_close(crit.global_prototypes, g2)
    torch.testing.assert_close(crit.global_prototypes[3], g1[3])


def test_ema_does_not_move_in_eval_mode():
    crit = SARTMLoss(loss_cfg(w3=0), num_classes=4, feat_dim=8).eval()
    crit(*batch())
    assert torch.count_nonzero(crit.global_prototypes) == 0


def test_zero_weights_remove_terms_and_buffers(monkeypatch):
    text = text_embeddings()
    full = SARTMLoss(loss_cfg(), num_classes=4, feat_dim=8, text_embeddings=text)
    assert set(full.state_dict()) == {"global_prototypes"}  # the text comes from its cache file
    assert full.global_prototypes.shape == (4, 8) and full.text_embeddings.shape == (4, 6)

    no_text = SARTMLoss(loss_cfg(w3=0), num_classes=4, feat_dim=8, text_embeddings=text)
    assert not hasattr(no_text, "text_embeddings")
    assert list(no_text(*batch())[1]) == ["ce_s0", "ce_s1", "l_cr"]

    no_ema = SARTMLoss(loss_cfg(w2=0), num_classes=4, feat_dim=8, text_embeddings=text)
    assert set(no_ema.state_dict()) == set() and not hasattr(no_ema, "global_prototypes")
    assert list(no_ema(*batch())[1]) == ["ce_s0", "ce_s1", "l_se"]

    ce_only = SARTMLoss(loss_cfg(w1=0, w2=0, w3=0), num_classes=4, feat_dim=8)
    assert set(ce_only.state_dict()) == set()

    def fail(*args, **kwargs):
        raise AssertionError("prototypes computed although w2 = w3 = 0")

    monkeypatch.setattr(losses, "class_prototypes", fail)
    outputs, label = batch()
    _, terms = ce_only({"s0": outputs["s0"]}, label)  # neither s1 nor sfm is needed
    assert list(terms) == ["ce_s0"]


def test_missing_or_wrong_text_embeddings_are_refused():
    with pytest.raises(ValueError, match="text embeddings"):
        SARTMLoss(loss_cfg(), num_classes=4, feat_dim=8)
    with pytest.raises(ValueError, match=r"\(4, D\)"):
        SARTMLoss(loss_cfg(), num_classes=4, feat_dim=8, text_embeddings=torch.zeros(3, 6))


def test_l_se_uses_only_present_classes():
    text = text_embeddings()
    outputs, label = batch()
    label[label == 3] = 0
    crit = SARTMLoss(loss_cfg(w2=0), num_classes=4, feat_dim=8, text_embeddings=text)
    changed = text.clone()
    changed[3] = -changed[3]
    other = SARTMLoss(loss_cfg(w2=0), num_classes=4, feat_dim=8, text_embeddings=changed)
    assert crit(outputs, label)[1]["l_se"] == other(outputs, label)[1]["l_se"]
    changed[1] = -changed[1]  # a present class: now it matters
    third = SARTMLoss(loss_cfg(w2=0), num_classes=4, feat_dim=8, text_embeddings=changed)
    assert crit(outputs, label)[1]["l_se"] != third(outputs, label)[1]["l_se"]


def test_non_finite_term_raises_naming_it():
    crit = SARTMLoss(loss_cfg(w2=0), num_classes=4, feat_dim=8, text_embeddings=text_embeddings())
    outputs, label = batch()
    outputs["sfm"] = outputs["sfm"].detach().clone()
    outputs["sfm"][0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="l_se") as info:
        crit(outputs, label)
    assert isinstance(info.value, NonFiniteLossError) and info.value.term == "l_se"
    outputs, label = batch()
    outputs["s1"] = torch.full_like(outputs["s1"], float("inf"))
    with pytest.raises(NonFiniteLossError, match="ce_s1"):
        crit(outputs, label)


def test_all_ignored_batch_still_backpropagates():
    crit = SARTMLoss(loss_cfg(), num_classes=4, feat_dim=8, text_embeddings=text_embeddings())
    outputs, label = batch()
    total, terms = crit(outputs, torch.full_like(label, 255))
    assert total.item() == 0.0 and all(t.item() == 0.0 for t in terms.values())
    total.backward()
    assert torch.count_nonzero(crit.global_prototypes) == 0


def test_bf16_autocast_keeps_prototype_terms_in_fp32():
    crit = SARTMLoss(loss_cfg(), num_classes=4, feat_dim=8, text_embeddings=text_embeddings())
    outputs, label = batch()
    ref = SARTMLoss(loss_cfg(), num_classes=4, feat_dim=8, text_embeddings=text_embeddings())
    _, want = ref(outputs, label)
    bf16 = {k: v.detach().bfloat16() for k, v in outputs.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, terms = crit(bf16, label)
    assert total.dtype == torch.float32
    # only the bf16 rounding of the inputs separates the two
    assert terms["l_se"].item() == pytest.approx(want["l_se"].item(), rel=0.05)


def test_similarity_matrices_for_figure_f8():
    text = text_embeddings()
    crit = SARTMLoss(loss_cfg(), num_classes=4, feat_dim=8, text_embeddings=text)
    outputs, label = batch()
    label[label == 2] = 1
    sim = crit.batch_similarity(outputs, label)
    assert sim.class_ids.tolist() == [0, 1, 3]
    assert sim.visual.shape == sim.text.shape == (3, 3)
    assert sim.visual.diagonal() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    keep = text[[0, 1, 3]]
    assert sim.text == pytest.approx((keep @ keep.T).numpy(), abs=1e-6)
    protos, present = class_prototypes(outputs["sfm"], label, 4)
    visual, none = similarity_matrices(protos, present, None)
    assert none is None and visual == pytest.approx(sim.visual)
