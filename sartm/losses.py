"""SARTM's training objective (docs/method.md sections 3-4): OHEM cross entropy, L_cr and L_se.

    L = w0 * CE(S0) + w1 * CE(S1) + w2 * L_cr + w3 * L_se

The distillation terms follow the authors' numerics (KL divergence with the student's
log-probabilities first and the teacher's probabilities second, mean over all elements). Where
the paper is vague we follow our reading in docs/method.md; each such place says so below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sartm.errors import SartmError

if TYPE_CHECKING:
    from sartm.config import LossConfig

IGNORE_INDEX = 255
TERMS = ("ce_s0", "ce_s1", "l_cr", "l_se")


class NonFiniteLossError(SartmError, FloatingPointError):
    """A loss term became NaN or infinite; `term` names it so the run can stop with a reason."""

    def __init__(self, term: str, value: float) -> None:
        super().__init__(f"loss term {term!r} is not finite ({value})")
        self.term = term
        self.value = value


def _zero_with_grad(like: Tensor) -> Tensor:
    """A scalar 0 that stays in the graph, so backward() works on a batch with nothing to learn."""
    return like.sum() * 0.0


def ohem_cross_entropy(
    logits: Tensor,
    label: Tensor,
    *,
    threshold: float = 0.7,
    min_kept_fraction: float = 1 / 16,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Online hard example mining cross entropy (Eq. 11), over the whole batch.

    Keeps the pixels whose CE exceeds -log(threshold) (true-class probability below `threshold`);
    when fewer than k = max(1, floor(n_valid * min_kept_fraction)) pixels are that hard, keeps the
    k largest losses instead. Pixels labelled `ignore_index` never count. Returns the mean over
    the kept pixels, or a graph-connected 0 when no pixel is valid.
    """
    # Masks instead of boolean indexing: the gradient stays dense (boolean indexing's backward is
    # a sorting scatter, 5% of a paper-size training step on an H200) and one host sync reads
    # both counts.
    pixel = F.cross_entropy(logits, label, ignore_index=ignore_index, reduction="none")
    valid = label != ignore_index
    hard = (pixel > -math.log(threshold)) & valid
    n_valid, n_hard = torch.stack([valid.sum(), hard.sum()]).tolist()
    if n_valid == 0:
        return _zero_with_grad(logits)
    k = min(n_valid, max(1, int(n_valid * min_kept_fraction)))
    if n_hard < k:
        return pixel.masked_fill(~valid, -math.inf).flatten().topk(k).values.mean()
    return (pixel * hard).sum() / n_hard


def plain_cross_entropy(
    logits: Tensor, label: Tensor, *, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Mean CE over the valid pixels (the authors' deleted training script); 0 if none is valid."""
    if not bool((label != ignore_index).any()):
        return _zero_with_grad(logits)
    return F.cross_entropy(logits, label, ignore_index=ignore_index)


CROSS_ENTROPY = ("ohem", "plain")


def class_prototypes(
    features: Tensor, label: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """Masked average pooling of the fused SFM: one d-vector per class present in the batch.

    features (B, d, h, w); label (B, H, W) is resized to (h, w) by nearest neighbour. Background
    is a class like any other. Returns (prototypes (K, d) float32, present class ids (K,) long),
    ids ascending. The authors also keep zero vectors for the absent classes; we do not, so an
    absent class never enters the similarity matrices or the EMA update.
    """
    b, d, h, w = features.shape
    small = F.interpolate(label[:, None].float(), size=(h, w), mode="nearest")
    small = small.long().flatten()  # (B*h*w,)
    flat = features.float().permute(0, 2, 3, 1).reshape(b * h * w, d)  # (B, d, h, w) -> (N, d)
    # Ignored pixels are summed into a spare row that is dropped (no boolean indexing: dense
    # gradient, no host sync). One index_add_ gives the sums and (last column) the counts;
    # unlike bincount it has a deterministic CUDA kernel.
    small = torch.where(small == ignore_index, num_classes, small)
    flat = torch.cat([flat, flat.new_ones(flat.shape[0], 1)], dim=1)
    sums = flat.new_zeros(num_classes + 1, d + 1).index_add_(0, small, flat)[:num_classes]
    present = torch.nonzero(sums[:, d], as_tuple=True)[0]  # the one host sync: K varies
    return sums[present, :d] / sums[present, d:], present


def cosine_similarity_matrix(vectors: Tensor) -> Tensor:
    """(K, D) -> (K, K) row-wise cosine similarities."""
    unit = F.normalize(vectors.float(), dim=-1)
    return unit @ unit.T


def _kl_mean(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """mean(kl_div(log_softmax(student), softmax(teacher), reduction="none")), rows over -1."""
    log_p = F.log_softmax(student_logits, dim=-1)
    q = F.softmax(teacher_logits, dim=-1)
    return F.kl_div(log_p, q, reduction="none").mean()


def loss_se(prototypes: Tensor, text_embeddings: Tensor) -> Tensor:
    """L_se (Eq. 14): the visual similarity structure follows the text teacher's.

    Both arguments cover the same classes in the same order (the classes present in the batch).
    V and T are their cosine-similarity matrices; the rows are compared as distributions.
    """
    if prototypes.shape[0] != text_embeddings.shape[0]:
        raise ValueError(
            f"loss_se: {prototypes.shape[0]} prototypes but {text_embeddings.shape[0]} text "
            "embeddings; pass the text embeddings of the present classes only"
        )
    return _kl_mean(cosine_similarity_matrix(prototypes), cosine_similarity_matrix(text_embeddings))


def loss_cr(prototypes: Tensor, global_prototypes: Tensor) -> Tensor:
    """L_cr (Eq. 12-13): batch prototypes towards the EMA global prototypes of the same classes.

    The softmax runs over the feature dimension (the authors' reading of the vague equations).
    """
    if prototypes.shape != global_prototypes.shape:
        raise ValueError(
            f"loss_cr: prototypes {tuple(prototypes.shape)} and global prototypes "
            f"{tuple(global_prototypes.shape)} differ; pass the rows of the present classes only"
        )
    return _kl_mean(prototypes, global_prototypes.detach())


@dataclass(frozen=True)
class SimilarityMatrices:
    """What figure F8 shows for one batch: class ids present, visual and text similarities."""

    class_ids: np.ndarray  # (K,)
    visual: np.ndarray  # (K, K)
    text: np.ndarray | None  # (K, K); None without a text teacher


def similarity_matrices(
    prototypes: Tensor, present: Tensor, text_embeddings: Tensor | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Visual and text cosine-similarity matrices (numpy) for the present classes (figure F8).

    `text_embeddings` holds every class (C, D); its rows are picked by `present`.
    """
    with torch.no_grad(), torch.autocast(device_type=prototypes.device.type, enabled=False):
        visual = cosine_similarity_matrix(prototypes.detach()).cpu().numpy()
        if text_embeddings is None:
            return visual, None
        text = cosine_similarity_matrix(text_embeddings[present.to(text_embeddings.device)])
        return visual, text.cpu().numpy()


class SARTMLoss(nn.Module):
    """The weighted sum of the four terms; a weight of 0 removes the term and what only it needs.

    w2 = 0: no EMA buffer. w3 = 0: no text embeddings. w2 = w3 = 0: no prototypes at all.
    Buffers: `global_prototypes` (C, d), persistent, so the EMA state goes into checkpoints;
    `text_embeddings` (C, D), not persistent: it comes from the text cache file on every build.

    The EMA update runs in training mode only (evaluation never moves it). It updates the rows of
    the classes present in the batch, G = m * G + (1 - m) * P.detach(), BEFORE L_cr is computed;
    absent classes keep their rows (the authors average zero vectors into them, see
    `class_prototypes`). Under DistributedDataParallel every rank updates its own copy from its
    own batch; with DDP's default `broadcast_buffers=True` rank 0's copy is broadcast at the next
    forward, so the checkpoint (written by rank 0) holds rank 0's EMA.
    """

    def __init__(
        self,
        loss_cfg: LossConfig,
        *,
        num_classes: int,
        feat_dim: int,
        text_embeddings: Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.weights = {
            "ce_s0": float(loss_cfg.w0),
            "ce_s1": float(loss_cfg.w1),
            "l_cr": float(loss_cfg.w2),
            "l_se": float(loss_cfg.w3),
        }
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"loss weights must be >= 0, got {self.weights}")
        if loss_cfg.ce not in CROSS_ENTROPY:
            raise ValueError(f"loss.ce: {loss_cfg.ce!r} is not one of {', '.join(CROSS_ENTROPY)}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.ce_name = loss_cfg.ce
        self.ohem_threshold = float(loss_cfg.ohem_threshold)
        self.ohem_min_kept = float(loss_cfg.ohem_min_kept)
        self.momentum = float(loss_cfg.ema_momentum)
        self.use_cr = self.weights["l_cr"] > 0
        self.use_se = self.weights["l_se"] > 0
        if self.use_cr:
            self.register_buffer("global_prototypes", torch.zeros(num_classes, feat_dim))
        if self.use_se:
            if text_embeddings is None:
                raise ValueError(
                    "loss.w3 > 0 needs the text embeddings (run `sartm embed` and pass "
                    "load_text_cache(...)), or set loss.w3=0"
                )
            if text_embeddings.ndim != 2 or text_embeddings.shape[0] != num_classes:
                raise ValueError(
                    f"text embeddings have shape {tuple(text_embeddings.shape)}; expected "
                    f"({num_classes}, D), one row per class"
                )
            self.register_buffer(
                "text_embeddings", text_embeddings.detach().float().clone(), persistent=False
            )

    @property
    def active_terms(self) -> tuple[str, ...]:
        """The terms with a weight above 0, in the order of TERMS."""
        return tuple(t for t in TERMS if self.weights[t] > 0)

    def extra_repr(self) -> str:
        weights = ", ".join(f"{t}={self.weights[t]:g}" for t in self.active_terms)
        return f"ce={self.ce_name}, {weights}, num_classes={self.num_classes}"

    def cross_entropy(self, logits: Tensor, label: Tensor) -> Tensor:
        if logits.shape[-2:] != label.shape[-2:]:
            raise ValueError(
                f"logits {tuple(logits.shape)} and label {tuple(label.shape)} differ in size; "
                "upsample the logits to the label size first"
            )
        if self.ce_name == "plain":
            return plain_cross_entropy(logits, label, ignore_index=self.ignore_index)
        return ohem_cross_entropy(
            logits,
            label,
            threshold=self.ohem_threshold,
            min_kept_fraction=self.ohem_min_kept,
            ignore_index=self.ignore_index,
        )

    @torch.no_grad()
    def update_global_prototypes(self, prototypes: Tensor, present: Tensor) -> None:
        """G[present] = m * G[present] + (1 - m) * P (detached)."""
        g = self.global_prototypes
        g[present] = self.momentum * g[present] + (1.0 - self.momentum) * prototypes.detach().to(g)

    def forward(
        self, outputs: dict[str, Tensor], label: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """(total, unweighted terms detached for logging); raises NonFiniteLossError."""
        terms: dict[str, Tensor] = {}
        if self.weights["ce_s0"] > 0:
            terms["ce_s0"] = self.cross_entropy(outputs["s0"], label)
        if self.weights["ce_s1"] > 0:
            if "s1" not in outputs:
                raise KeyError("loss.w1 > 0 but the model outputs have no 's1' (no aux head?)")
            terms["ce_s1"] = self.cross_entropy(outputs["s1"], label)
        if self.use_cr or self.use_se:
            sfm = outputs["sfm"]
            # Prototype statistics in fp32 even under autocast (bf16 similarity matrices are coarse).
            with torch.autocast(device_type=sfm.device.type, enabled=False):
                prototypes, present = class_prototypes(
                    sfm, label, self.num_classes, self.ignore_index
                )
                empty = present.numel() == 0
                if self.use_cr:
                    if self.training and not empty:
                        self.update_global_prototypes(prototypes, present)
                    terms["l_cr"] = (
                        _zero_with_grad(sfm)
                        if empty
                        else loss_cr(prototypes, self.global_prototypes[present])
                    )
                if self.use_se:
                    terms["l_se"] = (
                        _zero_with_grad(sfm)
                        if empty
                        else loss_se(prototypes, self.text_embeddings[present])
                    )
        if not terms:
            raise ValueError("every loss weight is 0: nothing to train")
        values = torch.stack([t.detach().float() for t in terms.values()])
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0, 0])
            name = list(terms)[bad]
            raise NonFiniteLossError(name, float(values[bad]))
        total = sum(self.weights[name] * value for name, value in terms.items())
        return total, {name: value.detach() for name, value in terms.items()}

    @torch.no_grad()
    def batch_similarity(self, outputs: dict[str, Tensor], label: Tensor) -> SimilarityMatrices:
        """Figure F8 for one batch: present class ids, visual and (if any) text similarities."""
        prototypes, present = class_prototypes(
            outputs["sfm"], label, self.num_classes, self.ignore_index
        )
        text = self.text_embeddings if self.use_se else None
        visual, text_sim = similarity_matrices(prototypes, present, text)
        return SimilarityMatrices(class_ids=present.cpu().numpy(), visual=visual, text=text_sim)
