"""A frozen CLIP text encoder as tau_theta: Stable Diffusion v1's conditioner (LDM Sec. 3.3, Eq. 3).

The paper trains its text encoder jointly with the UNet (LDM-KL-8-G: a BERT tokenizer and a
32-layer transformer). Stable Diffusion v1 instead keeps a pretrained text encoder frozen: the
text half of OpenAI's CLIP ViT-L/14 (Radford et al. 2021, transformers' CLIPTextModel,
123,060,480 parameters). A caption becomes 77 tokens (BPE, <|startoftext|> ... <|endoftext|>,
padded with <|endoftext|>), the transformer's last hidden state (after its final LayerNorm) is
the UNet's cross-attention context:

    captions (B strings) -> token ids (B, 77) -> context (B, 77, 768)

The "null" caption of classifier-free guidance is the empty string "" (Stable Diffusion's
unconditional prompt): it still yields 77 tokens, <|startoftext|> then padding. The conditioner
follows minildm.conditioning.base.Conditioner: the condition key is "caption", `prepare` tokenizes.

Nothing is downloaded here: the encoder and tokenizer are passed in, already loaded
(minildm.pretrained.stable_diffusion reads them from local files).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from minildm.conditioning.base import Conditioner

VIT_L_14_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                     num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                     layer_norm_eps=1e-5, projection_dim=768)
"""CLIP ViT-L/14's text transformer (openai/clip-vit-large-patch14 config.json): Stable Diffusion v1's encoder."""


def clip_text_model(config: dict[str, Any] | None = None) -> nn.Module:
    """A randomly initialised transformers CLIPTextModel; `config` overrides VIT_L_14_TEXT."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**{**VIT_L_14_TEXT, **(config or {})}))


class FrozenCLIPTextConditioner(Conditioner):
    """Captions (B strings) -> {"context": (B, max_length, width)} from a frozen CLIP text encoder.

    Args:
        text_encoder: a transformers CLIPTextModel (or a config dict for `clip_text_model`: random
            weights, for counting parameters or building the architecture before loading weights).
        tokenizer: a transformers CLIPTokenizer; None is allowed until captions are encoded.
        max_length: tokens per caption (default: the tokenizer's model_max_length when it is a real
            limit, else the encoder's max_position_embeddings: 77 for CLIP).
    """

    keys = ("caption",)

    def __init__(self, text_encoder: nn.Module | dict[str, Any] | None = None, tokenizer: Any = None,
                 max_length: int | None = None):
        super().__init__()
        if text_encoder is None or isinstance(text_encoder, dict):
            text_encoder = clip_text_model(text_encoder)
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        positions = self.text_encoder.config.max_position_embeddings
        if max_length is None:
            limit = getattr(tokenizer, "model_max_length", None)
            max_length = limit if isinstance(limit, int) and limit <= positions else positions
        if max_length > positions:
            raise ValueError(f"max_length {max_length} exceeds the text encoder's {positions} positions")
        self.max_length = max_length

    @property
    def context_dim(self) -> int:
        """Width of each context token (768 for CLIP ViT-L/14): the UNet's context_dim."""
        return self.text_encoder.config.hidden_size

    def train(self, mode: bool = True) -> FrozenCLIPTextConditioner:
        """Frozen: the encoder stays in eval mode whatever the trainer asks."""
        super().train(mode)
        self.text_encoder.eval()
        return self

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        """Captions -> token ids (B, max_length) long: padded to max_length, longer captions truncated."""
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"captions must be a list of strings (one per image), got {captions!r:.80}")
        if self.tokenizer is None:
            raise ValueError("this CLIP conditioner has no tokenizer: load one (transformers CLIPTokenizer, e.g. "
                             "from a Stable Diffusion folder's tokenizer/ with vocab.json + merges.txt)")
        return self.tokenizer(list(captions), padding="max_length", max_length=self.max_length, truncation=True,
                              return_tensors="pt").input_ids

    def prepare(self, cond: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """{"caption": B strings (or token ids (B, max_length) already)} -> {"caption": token ids}."""
        self.check_keys(cond)
        captions = cond["caption"]
        if isinstance(captions, torch.Tensor):
            return {"caption": captions.long()}
        return {"caption": self.tokenize(captions)}

    def null_cond(self, cond: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The empty caption "" (Stable Diffusion's unconditional prompt), tokenized, for every item.

        Without a tokenizer (an architecture built from a config): <|startoftext|> then <|endoftext|>
        padding, the ids of the encoder's config, which is what CLIP's tokenizer makes of "".
        """
        ids = cond["caption"]
        if self.tokenizer is not None:
            null = self.tokenize([""])[0]
        else:
            config = self.text_encoder.config
            null = torch.full((self.max_length,), config.eos_token_id, dtype=torch.long)
            null[0] = config.bos_token_id
        return {"caption": null.to(ids.device).expand(ids.shape[0], -1)}

    @torch.no_grad()
    def forward(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Token ids (B, max_length) -> {"context": (B, max_length, width)}, the encoder's last hidden state."""
        ids = ids.to(self.text_encoder.device)
        return {"context": self.text_encoder(input_ids=ids).last_hidden_state}  # (B, 77) -> (B, 77, 768)
