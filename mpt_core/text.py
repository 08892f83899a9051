"""Text tokenisation with room for learned prompt tokens right after the start token."""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers


@dataclass(frozen=True)
class TextInputs:
    """A tokenised batch. `input_ids` and `attention_mask` are (N, L) long tensors.

    Positions `1 .. 1 + n_prompt_tokens` hold placeholder ids that the text prompt
    generator overwrites; the placeholders count as real tokens in the mask.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    n_prompt_tokens: int

    def to(self, device: torch.device | str) -> TextInputs:
        return TextInputs(
            self.input_ids.to(device), self.attention_mask.to(device), self.n_prompt_tokens
        )


class TextTokenizer:
    """Wraps a `tokenizers.Tokenizer`: [start] [placeholder]*n text... [end] [pad]...

    Sequences are padded to the longest in the batch and truncated so the end token
    and every prompt placeholder always fit in `max_length`.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        start_token: str,
        end_token: str,
        pad_token: str,
        placeholder_token: str,
        max_length: int,
    ) -> None:
        # We pad and truncate ourselves; a tokenizer.json may carry its own settings.
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_length = max_length
        ids = {}
        for role, tok in {
            "start": start_token,
            "end": end_token,
            "pad": pad_token,
            "placeholder": placeholder_token,
        }.items():
            tok_id = tokenizer.token_to_id(tok)
            if tok_id is None:
                raise ValueError(f"tokenizer has no {role} token {tok!r}")
            ids[role] = tok_id
        self.start_id, self.end_id = ids["start"], ids["end"]
        self.pad_id, self.placeholder_id = ids["pad"], ids["placeholder"]

    def __call__(self, texts: Sequence[str], n_prompt_tokens: int = 0) -> TextInputs:
        room = self.max_length - 2 - n_prompt_tokens
        if room < 1:
            raise ValueError(
                f"{n_prompt_tokens} prompt tokens leave no room for text in a sequence of "
                f"{self.max_length} tokens; use fewer prompt tokens"
            )
        encoded = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        rows = [
            [self.start_id, *[self.placeholder_id] * n_prompt_tokens, *enc.ids[:room], self.end_id]
            for enc in encoded
        ]
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return TextInputs(input_ids, mask, n_prompt_tokens)


def char_tokenizer(specials: Sequence[str]) -> Tokenizer:
    """A character-level tokenizer over printable ASCII, built in code for tiny test models."""
    vocab = {tok: i for i, tok in enumerate([*specials, "[UNK]"])}
    for ch in string.ascii_lowercase + string.digits + string.punctuation:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Split("", behavior="isolated")]
    )
    return tok
