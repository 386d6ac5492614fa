"""Pretrained weights: the course's own checkpoints (by name) and CompVis / diffusers interop."""
