"""Text conditioning (LDM Sec. 3.3 and 4.3.1): a caption -> token ids -> tau_theta -> tokens for cross-attention.

The paper's text-to-image model (LDM-KL-8-G) tokenizes with BERT's WordPiece tokenizer (77 tokens,
padded) and encodes with a transformer trained from scratch jointly with the UNet (32 layers,
width 1280). The course does the same at toy scale:

- the tokenizer is a real one from Hugging Face `tokenizers`: a WordLevel model whose vocabulary
  is the words of the dataset's captions (`caption_vocabulary`), lower-cased, split on whitespace
  and punctuation, padded with [PAD] (id 0) to `max_length`; unknown words become [UNK] (id 1).
  The vocabulary is a constructor argument, so it travels with the checkpoint's config (JSON);
  `tokenizer.to_str()` gives the tokenizers-library JSON of the same tokenizer;
- tau_theta is a small pre-LayerNorm transformer encoder over token + position embeddings,
  trained jointly with the UNet; every position's output is a context token (B, L, D).

Padding is not masked inside the encoder (neither is it in the CompVis BERTEmbedder): [PAD] is a
token like any other, and the null caption for classifier-free guidance is the empty string "",
that is L padding tokens, as in Stable Diffusion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from minildm.conditioning.base import Conditioner

SPECIAL_TOKENS = ("[PAD]", "[UNK]")
PAD_ID, UNK_ID = 0, 1


def caption_vocabulary(captions: Iterable[str]) -> list[str]:
    """The distinct words of `captions`, sorted, split and lower-cased exactly as the tokenizer does."""
    split = pre_tokenizers.Whitespace()
    words = {word for caption in captions for word, _ in split.pre_tokenize_str(caption.lower())}
    return sorted(words)


def build_tokenizer(vocabulary: Sequence[str], max_length: int) -> Tokenizer:
    """A WordLevel tokenizer: ids 0 = [PAD], 1 = [UNK], then `vocabulary` in order; pads/truncates to `max_length`."""
    words = list(vocabulary)
    clashes = sorted({w for w in words if words.count(w) > 1 or w in SPECIAL_TOKENS})
    if clashes:
        raise ValueError(f"the vocabulary must list distinct words other than {', '.join(SPECIAL_TOKENS)}; "
                         f"got {', '.join(map(repr, clashes))} more than once or reserved")
    if max_length < 1:
        raise ValueError(f"max_length must be a positive number of tokens, got {max_length}")
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token="[PAD]", length=max_length)
    tokenizer.enable_truncation(max_length)
    return tokenizer


class TextConditioner(Conditioner):
    """Captions -> {"context": (B, max_length, embed_dim)}: a WordLevel tokenizer and a transformer tau_theta.

    Args:
        vocabulary: the words the tokenizer knows (see `caption_vocabulary`).
        max_length: tokens per caption after padding; longer captions are refused.
        embed_dim: width of the token embeddings = the UNet's context_dim.
        depth, heads: transformer layers and attention heads.
    """

    keys = ("caption",)

    def __init__(self, vocabulary: list[str], max_length: int = 16, embed_dim: int = 64, depth: int = 2,
                 heads: int = 4):
        super().__init__()
        self.vocabulary, self.max_length = list(vocabulary), max_length
        self.tokenizer = build_tokenizer(self.vocabulary, max_length)
        self.token_embedding = nn.Embedding(len(SPECIAL_TOKENS) + len(self.vocabulary), embed_dim)
        self.position_embedding = nn.Parameter(0.02 * torch.randn(max_length, embed_dim))
        layer = nn.TransformerEncoderLayer(embed_dim, heads, dim_feedforward=4 * embed_dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(embed_dim)

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        """B strings -> token ids (B, max_length), padded with [PAD] = 0."""
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"captions must be a list of strings (one per image), got {captions!r:.80}")
        encodings = self.tokenizer.encode_batch(list(captions))
        too_long = [c for c, e in zip(captions, encodings) if e.overflowing]
        if too_long:
            raise ValueError(f"caption {too_long[0]!r} has more than max_length = {self.max_length} tokens")
        return torch.tensor([e.ids for e in encodings], dtype=torch.long)

    def prepare(self, cond: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """{"caption": B strings, or token ids (B, max_length)} -> {"caption": token ids (B, max_length)}."""
        self.check_keys(cond)
        captions = cond["caption"]
        if isinstance(captions, torch.Tensor):
            if captions.dim() != 2 or captions.shape[1] != self.max_length:
                raise ValueError(f"token ids must have shape (B, {self.max_length}), got {tuple(captions.shape)}")
            return {"caption": captions.long()}
        return {"caption": self.tokenize(captions)}

    def null_cond(self, cond: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The empty caption "" (all [PAD]) for every item."""
        ids = cond["caption"]
        return {"caption": torch.full_like(ids, PAD_ID)}

    def forward(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Token ids (B, L) -> {"context": (B, L, embed_dim)}, one context token per position (tau_theta(y))."""
        h = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]  # (B, L) -> (B, L, D)
        h = self.transformer(h)  # (B, L, D), every token attends to every token
        return {"context": self.final_norm(h)}
