"""Path S0: SAM2's mask decoder run prompt-free on the fused maps, one mask token per class.

Built from `sam2`'s own components so that the official checkpoint's `sam_mask_decoder.*`
weights (two-way transformer, upscaling, `conv_s0`/`conv_s1`) and the three prompt-encoder
tensors a prompt-free decoder needs (`no_mask_embed`, `not_a_point_embed`, the random-Fourier PE
matrix) load by name.
What SARTM changes (paper Eq. 9, docs/method.md section 2.4):

- SAM2's 4 mask tokens become C class tokens, each with its own hypernetwork MLP; both start
  fresh (as the authors), so their checkpoint weights are skipped.
- No IoU token / IoU head / object-score head: SARTM never uses them, so they are not built.
- Prompt-free exactly as SAM2 calls itself without prompts (`SAM2Base._forward_sam_heads` with no
  points pads one point of label -1, and the prompt encoder pads one more): the two-way
  transformer reads the class tokens followed by two "not-a-point" tokens
  (`sam_prompt_encoder.not_a_point_embed`), and the dense prompt is the "no mask" embedding.
  The prompt-encoder parts stay frozen in SARTM (the authors freeze the prompt encoder).
- The image PE is computed for the actual feature grid (inputs are not always 1024 x 1024).
- Each image keeps its own tokens (no repeat_interleave over prompts).
"""

from __future__ import annotations

import torch
from sam2.modeling.position_encoding import PositionEmbeddingRandom
from sam2.modeling.sam.transformer import TwoWayTransformer
from sam2.modeling.sam2_utils import MLP, LayerNorm2d
from torch import Tensor, nn

from sartm.model.sam2_weights import CheckpointError, LoadReport

DECODER_PREFIX = "sam_mask_decoder."
PROMPT_PREFIX = "sam_prompt_encoder."
# The parts of this module that start fresh instead of loading (the authors do the same).
FRESH_PARTS = ("mask_tokens.", "output_hypernetworks_mlps.")

# Checkpoint entries of the two SAM modules that SARTM leaves out on purpose, with the reason.
SKIPPED_DECODER_PARTS = {
    "mask_tokens.": "one token per class replaces SAM2's 4 mask tokens (trained from scratch)",
    "output_hypernetworks_mlps.": "per-class hypernetwork MLPs start fresh (as the authors)",
    "iou_token.": "IoU prediction is not used by SARTM (not built)",
    "iou_prediction_head.": "IoU prediction is not used by SARTM (not built)",
    "obj_score_token.": "object-score prediction is not used by SARTM (not built)",
    "pred_obj_score_head.": "object-score prediction is not used by SARTM (not built)",
}
SKIPPED_PROMPT_PARTS = {
    "point_embeddings.": "prompt-free decoder: no point or box prompts",
    "mask_downscaling.": "prompt-free decoder: no mask prompts",
}


# SAM2's prompt-free call: its own padding point plus the prompt encoder's padding point.
NOT_A_POINT_TOKENS = 2


class PromptFreeEmbedding(nn.Module):
    """The pieces of SAM2's prompt encoder a prompt-free decoder needs.

    Names mirror `sam_prompt_encoder.*` (`no_mask_embed`, `not_a_point_embed`, `pe_layer`) so
    they load from the official checkpoint.
    """

    def __init__(self, *, embed_dim: int) -> None:
        super().__init__()
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self.not_a_point_embed = nn.Embedding(1, embed_dim)

    def sparse_prompt(self, batch: int) -> Tensor:
        """(B, 2, d): the two "not-a-point" tokens SAM2 feeds when it is given no prompt."""
        return self.not_a_point_embed.weight.expand(batch, NOT_A_POINT_TOKENS, -1)

    def dense_pe(self, size: tuple[int, int]) -> Tensor:
        """Positional encoding (1, d, h, w) for the actual feature grid."""
        return self.pe_layer(size).unsqueeze(0)

    def dense_prompt(self) -> Tensor:
        """The "no mask" dense prompt as (1, d, 1, 1), broadcast over the grid."""
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1)


class ClassTokenMaskDecoder(nn.Module):
    """SAM2's mask decoder with C class tokens: fused maps in, (B, C, H/4, W/4) logits out.

    Parameter names match `sam_mask_decoder.*` of the official checkpoint. `conv_s0` / `conv_s1`
    are also used before fusion (see `project_high_res`), exactly where SAM2 applies them.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_classes: int,
        activation: type[nn.Module] = nn.GELU,
        hypernet_depth: int = 3,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"decoder: num_classes must be >= 1, got {num_classes}")
        d = transformer_dim
        self.transformer_dim = d
        self.num_classes = num_classes
        self.transformer = transformer
        self.prompt = PromptFreeEmbedding(embed_dim=d)
        self.mask_tokens = nn.Embedding(num_classes, d)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2),
            LayerNorm2d(d // 4),
            activation(),
            nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.conv_s0 = nn.Conv2d(d, d // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(d, d // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(d, d, d // 8, hypernet_depth) for _ in range(num_classes)
        )

    def project_high_res(self, feat_s0: Tensor, feat_s1: Tensor) -> tuple[Tensor, Tensor]:
        """FPN stride-4 / stride-8 levels (d) -> FFP (d/8) / IFP (d/4), as SAM2.forward_image."""
        return self.conv_s0(feat_s0), self.conv_s1(feat_s1)

    @torch.no_grad()
    def load_sam2_state(
        self,
        mask_decoder: dict[str, Tensor],
        prompt_encoder: dict[str, Tensor],
        *,
        source: str = "state dict",
    ) -> LoadReport:
        """Load the `sam_mask_decoder.*` and `sam_prompt_encoder.*` parts of an official
        checkpoint (keys without those prefixes) where names and shapes match; the report's keys
        carry the prefixes so it merges with the encoder's. A shape mismatch on a weight that
        should load means another model width: `CheckpointError`."""
        own = self.state_dict()
        wanted = {k for k in own if not k.startswith(FRESH_PARTS)}
        report = LoadReport(source=source)
        updates: dict[str, Tensor] = {}
        entries = [(DECODER_PREFIX, k, k, SKIPPED_DECODER_PARTS) for k in mask_decoder] + [
            (PROMPT_PREFIX, k, f"prompt.{k}", SKIPPED_PROMPT_PARTS) for k in prompt_encoder
        ]
        for prefix, key, target, skipped in entries:
            value = (mask_decoder if prefix == DECODER_PREFIX else prompt_encoder)[key]
            name = prefix + key
            reason = next((r for p, r in skipped.items() if key.startswith(p)), None)
            if reason is not None:
                report.skipped[name] = reason
            elif target in wanted:
                if tuple(value.shape) != tuple(own[target].shape):
                    raise CheckpointError(
                        f"{source}: {name} has shape {tuple(value.shape)}, this decoder "
                        f"(d = {self.transformer_dim}) needs {tuple(own[target].shape)}"
                    )
                updates[target] = value
                report.loaded.append(name)
            else:
                report.unexpected.append(name)
        for target in sorted(wanted - set(updates)):
            prefix, key = (
                (PROMPT_PREFIX, target.removeprefix("prompt."))
                if target.startswith("prompt.")
                else (DECODER_PREFIX, target)
            )
            report.missing.append(prefix + key)
        tokens = mask_decoder.get("mask_tokens.weight")
        if tokens is not None:
            report.notes.append(
                f"mask tokens: {tokens.shape[0]} in the checkpoint, {self.num_classes} class "
                "tokens here (fresh, with their hypernetwork MLPs)"
            )
        self.load_state_dict(updates, strict=False)
        return report

    def forward(self, image_embedding: Tensor, feat_s0: Tensor, feat_s1: Tensor) -> Tensor:
        """image_embedding (B, d, h, w) at stride 16, feat_s1 (B, d/4, 2h, 2w), feat_s0
        (B, d/8, 4h, 4w) -> class logits (B, C, 4h, 4w)."""
        b, c, h, w = image_embedding.shape
        # class tokens, then the prompt-free sparse tokens (SAM2's order: output tokens first)
        tokens = torch.cat(
            [self.mask_tokens.weight.unsqueeze(0).expand(b, -1, -1), self.prompt.sparse_prompt(b)],
            dim=1,
        )  # (B, C + 2, d)
        src = image_embedding + self.prompt.dense_prompt()
        pos = self.prompt.dense_pe((h, w)).to(src.dtype).expand(b, -1, -1, -1)
        hs, src = self.transformer(src, pos, tokens)  # hs (B, C + 2, d); src (B, hw, d)
        src = src.transpose(1, 2).reshape(b, c, h, w)

        # SAM2's high-resolution path: add the fused stride-8 and stride-4 maps while upscaling.
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        up = act1(ln1(dc1(src) + feat_s1))
        up = act2(dc2(up) + feat_s0)  # (B, d/8, 4h, 4w)

        hyper = torch.stack(
            [mlp(hs[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # (B, C, d/8)
        b, c8, uh, uw = up.shape
        return (hyper @ up.reshape(b, c8, uh * uw)).reshape(b, self.num_classes, uh, uw)


def build_decoder(
    *, transformer_dim: int, num_classes: int, depth: int = 2, num_heads: int = 8
) -> ClassTokenMaskDecoder:
    """SAM2's decoder hyper-parameters (depth 2, 8 heads, MLP 2048 = 8 d), scaled with d.

    Attention runs at d/2 (SAM's downsample rate 2), so the head count must divide d/2; tiny test
    models with a small d get the largest count <= num_heads that does.
    """
    heads = max(1, min(num_heads, transformer_dim // 2))
    while (transformer_dim // 2) % heads:
        heads -= 1
    transformer = TwoWayTransformer(
        depth=depth,
        embedding_dim=transformer_dim,
        num_heads=heads,
        mlp_dim=8 * transformer_dim,
    )
    return ClassTokenMaskDecoder(
        transformer_dim=transformer_dim, transformer=transformer, num_classes=num_classes
    )
