"""sartm: a reproducible pipeline for SARTM (SAM2 + LoRA + language-aided distillation, RGB-T)."""

__version__ = "0.1.0"
