"""Conditioning: turn a label, caption, layout or image into UNet inputs (LDM Sec. 3.3)."""

from minildm.conditioning.class_embedder import ClassConditioner

__all__ = ["ClassConditioner"]
