"""Tiny random-weight models of every decoder family the engine serves, built from each family's config class.

Each is saved with a real tokenizer and chat template (the caller's), so the whole engine runs on it; a second or
two per family on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from routehead_rag.backbone import Backbone, load_backbone
from routehead_rag.documents import to_documents

_SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
              head_dim=16, max_position_embeddings=2048, pad_token_id=0,
              # mixtures of experts, under each family's own names
              num_local_experts=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, n_routed_experts=4,
              n_shared_experts=1, first_k_dense_replace=1, n_group=1, topk_group=1)
_MLA = dict(head_dim=8, num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8,
            qk_nope_head_dim=8, v_head_dim=16)

# model_type -> what its config needs beyond _SMALL. The 18 families first, then other current chat families.
FAMILIES: dict[str, dict] = {
    "llama": {}, "mistral": {}, "qwen2": {}, "qwen3": {}, "gemma3_text": {}, "phi3": {}, "olmo2": {}, "smollm3": {},
    "granite": {}, "mixtral": {}, "qwen3_moe": {}, "olmoe": {}, "cohere": {}, "stablelm": {}, "starcoder2": {},
    "gpt_neox": {}, "glm": {}, "gemma2": {},  # gemma2: logit soft-capping, served on the eager kernel
    "gemma": {}, "qwen2_moe": {}, "cohere2": {}, "olmo": {}, "olmo3": {}, "glm4": {}, "glm4_moe": {}, "phi": {},
    "phimoe": {}, "ministral": {}, "exaone4": {}, "ernie4_5": {}, "hunyuan_v1_dense": {}, "seed_oss": {},
    "apertus": {}, "helium": {}, "internlm3": {}, "granitemoe": {}, "nemotron": {}, "persimmon": {}, "lfm2": {},
    "llama4_text": {"intermediate_size_mlp": 128},
    "gpt_oss": {},  # attention sinks, served on the eager kernel
    "vaultgemma": {}, "deepseek_v3": _MLA, "deepseek_v2": _MLA,
}

# model_type -> the words of the error that refuses it
REFUSED: dict[str, str] = {
    "jamba": "hybrid", "bamba": "hybrid", "qwen3_next": "hybrid",  # Mamba / linear-attention layers
    "gpt2": "decoder layers elsewhere", "bloom": "decoder layers elsewhere",  # GPT-2-style stacks
    "diffllama": "differential attention", "falcon_h1": "Mamba mixers",
}


def save_tiny(model_type: str, folder: Path, tokenizer, **overrides) -> Path:
    """A random-weight model of ``model_type`` with ``tokenizer``, saved in ``folder``; queries sharpened (×8) so
    that the heads' attention, and the scores, differ visibly."""
    options = {**_SMALL, **FAMILIES.get(model_type, {}), "vocab_size": len(tokenizer), **overrides}
    config = AutoConfig.for_model(model_type, **options)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if name.endswith(("q_proj.weight", "query_key_value.weight", "qkv_proj.weight", "q_b_proj.weight")):
                weight.mul_(8)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def load(folder: Path) -> Backbone:
    """The model in ``folder`` as a :class:`Backbone` of its own (fp32, CPU), kept out of the engine's shared
    backbone cache: dozens of tiny models would push the real default model out of it, and the adapters' tests
    hold that model to be loaded once per process."""
    return load_backbone(folder, device="cpu", dtype="float32")


# one request that every engine-against-reference test reranks
QUERY = "What causes scurvy in sailors?"
DOCS = [
    "Scurvy is a disease resulting from a lack of vitamin C (ascorbic acid).",
    {"title": "James Lind", "text": "In 1747 James Lind gave sailors with scurvy oranges and lemons; they recovered."},
    "Clipper ships were fast sailing vessels built to carry tea across the oceans.",
    "Rickets results in weak or soft bones in children, caused by a lack of vitamin D.",
]


def reference_prompt(reranker, docs=DOCS):
    """The prompt ``reranker`` builds for :data:`QUERY` over ``docs``, for the eager reference to run."""
    return reranker.prompts.build(QUERY, [reranker.prompts.doc_ids(d) for d in to_documents(docs)])
