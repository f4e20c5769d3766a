"""Tokenizing from many threads at once.

A fast tokenizer is one Rust object whose settings (``split_special_tokens``, truncation, padding) each call
sets before it encodes; two threads calling it at once can encode with each other's settings (a document's
literal ``<|im_start|>`` becoming the special token) or fail with ``RuntimeError: Already borrowed``. Every use
of a tokenizer in the package goes through this module, under one lock: encoding a prompt's pieces takes
microseconds next to the forward that follows. A caller's own calls take no lock of ours, so the engine encodes with
a copy nobody else holds (:attr:`routehead_rag.backbone.Backbone.engine_tokenizer`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch

_LOCK = threading.Lock()


def encode(tokenizer, text: str, *, user: bool = False) -> list[int]:
    """Token ids of ``text``, no special tokens added. ``user`` text never holds a special token: a literal
    ``<|im_start|>`` in it is tokenized as text."""
    with _LOCK:
        return tokenizer(text, add_special_tokens=False, split_special_tokens=user)["input_ids"]


def cut_to_tokens(tokenizer, text: str, max_tokens: int, *, user: bool = False) -> tuple[str, int]:
    """``text`` cut after its first ``max_tokens`` tokens (as :func:`encode` reads it), and its tokens before the cut."""
    with _LOCK:
        encoded = tokenizer(text, add_special_tokens=False, split_special_tokens=user, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    if len(ids) <= max_tokens:
        return text, len(ids)
    return (text[: offsets[max_tokens - 1][1]] if max_tokens > 0 else ""), len(ids)


def chat_text(tokenizer, messages: list[dict[str, str]]) -> str:
    """``messages`` rendered by the tokenizer's chat template, ready for the assistant's turn."""
    with _LOCK:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def decode(tokenizer, ids: Sequence[int] | torch.Tensor) -> str:
    """Text of ``ids``, special tokens dropped."""
    with _LOCK:
        return tokenizer.decode(ids, skip_special_tokens=True)
