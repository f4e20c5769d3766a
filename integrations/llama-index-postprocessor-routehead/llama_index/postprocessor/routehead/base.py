"""``RouteHeadRerank``: a LlamaIndex node postprocessor over routehead-rag's :class:`RouteHeadReranker`.

All scoring lives in the engine; this adapter only turns nodes into texts (``MetadataMode.EMBED``),
the engine's results back into ``NodeWithScore`` objects, and reports the ``ReRankStartEvent`` /
``ReRankEndEvent`` pair. The input order is the first-stage order the engine is told about, so pass
the nodes as the retriever returned them (best first).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr, ValidationInfo, field_validator
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from routehead_rag import RerankResult, RouteHeadReranker
from routehead_rag.adapters import (
    COUNT_OPTIONS,
    MAX_DOC_WORDS,
    RAW_SCORE_KEY,
    adapter_engine,
    check_count,
    check_head_list,
    shown_score,
)

dispatcher = get_dispatcher(__name__)


class RouteHeadRerank(BaseNodePostprocessor):
    """Re-rank nodes by the attention an LLM's heads pay to them; keep the best ``top_n``.

    Either configure the engine through the fields below, or pass ``reranker=RouteHeadReranker(...)``
    to share one engine (and one loaded model) with other components, e.g. the LangChain compressor.
    ``mode``, ``heads`` and ``router`` left as ``None`` take the engine's defaults.
    """

    model: str | None = Field(
        default=None, description="None: the embedded SmolLM2-135M-Instruct; else a hub id, model folder or .gguf.")
    top_n: int = Field(default=5, gt=0, description="Number of nodes to return, best first.")
    mode: str | None = Field(
        default=None, description="'routed', 'static' (with heads) or 'all' (ICR); None: the engine's default.")
    heads: list[int] | None = Field(
        default=None, description="Head indices (layer * n_heads + head) for mode='static'.")
    router: Any = Field(
        default=None, exclude=True,
        description="A router (folder, or object with select(query, backbone) -> heads) for mode='routed'; "
                    "None: the engine's.")
    device: str = Field(default="auto", description="'auto' (cuda, then mps, then cpu), or a torch device.")
    max_doc_words: int | None = Field(default=MAX_DOC_WORDS, description="Each node's text is cut to this many words.")
    max_tokens: int | None = Field(default=None, description="Tokens per forward window; None: the model's context.")
    window_size: int | None = Field(default=None, description="At most this many nodes per forward window.")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the incoming score as node.node.metadata['retrieval_score'].")

    _reranker: RouteHeadReranker = PrivateAttr()

    def __init__(self, *, reranker: RouteHeadReranker | None = None, **data: Any) -> None:
        super().__init__(**data)
        self._reranker = adapter_engine(reranker, data, self)

    @field_validator(*COUNT_OPTIONS, mode="before")
    @classmethod
    def _check_count(cls, value: Any, info: ValidationInfo) -> int | None:
        """As the engine: positive integers (numpy's too), or None where the field allows it (not ``top_n``);
        not ``True``, ``2.0`` or ``"3"``."""
        return check_count(info.field_name, value, optional=info.field_name != "top_n")

    @field_validator("heads", mode="before")
    @classmethod
    def _check_heads(cls, value: Any) -> list[int] | None:
        return check_head_list(value)

    @classmethod
    def class_name(cls) -> str:
        return "RouteHeadRerank"

    @property
    def reranker(self) -> RouteHeadReranker:
        """The engine; e.g. ``reranker.select_heads(query)`` tells which heads score a query."""
        return self._reranker

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        texts = self._texts(nodes, query_bundle)
        if not nodes:
            return []
        with self._reranking(nodes, query_bundle) as finish:
            return finish(self._reranker.rerank(query_bundle.query_str, texts, top_n=self.top_n))

    async def _apostprocess_nodes(self, nodes: list[NodeWithScore],
                                  query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        """As :meth:`_postprocess_nodes`, with the forward passes in a worker thread: the event loop keeps running."""
        texts = self._texts(nodes, query_bundle)
        if not nodes:
            return []
        with self._reranking(nodes, query_bundle) as finish:
            results = await asyncio.to_thread(self._reranker.rerank, query_bundle.query_str, texts, top_n=self.top_n)
            return finish(results)

    @contextlib.contextmanager
    def _reranking(self, nodes: list[NodeWithScore], query_bundle: QueryBundle,
                   ) -> Iterator[Callable[[Sequence[RerankResult]], list[NodeWithScore]]]:
        """Report the start (instrumentation event, callback event) and give ``finish(results)``: the new nodes,
        reported as the end."""
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=self.top_n,
                                          model_name=self._reranker.backbone.name))
        payload = {EventPayload.NODES: nodes, EventPayload.MODEL_NAME: self._reranker.backbone.name,
                   EventPayload.QUERY_STR: query_bundle.query_str, EventPayload.TOP_K: self.top_n}
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            def finish(results: Sequence[RerankResult]) -> list[NodeWithScore]:
                new_nodes = self._reranked(nodes, results)
                event.on_end(payload={EventPayload.NODES: new_nodes})
                dispatcher.event(ReRankEndEvent(nodes=new_nodes))
                return new_nodes

            yield finish

    @staticmethod
    def _texts(nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> list[str]:
        """What the engine reads: each node's EMBED text. A missing query is an error, as in LlamaIndex's rerankers."""
        if query_bundle is None:
            raise ValueError("RouteHeadRerank needs the query: call postprocess_nodes(nodes, query_str=...) "
                             "or postprocess_nodes(nodes, query_bundle=QueryBundle(...)).")
        return [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]

    def _reranked(self, nodes: list[NodeWithScore], results: Sequence[RerankResult]) -> list[NodeWithScore]:
        """New ``NodeWithScore`` objects, best first, around the same nodes, scored by the relevance score in [0, 1]
        where the engine has a calibration (else its own score); the engine's own score goes into the node's
        metadata (``routehead_score``), and the incoming scores are not changed."""
        new_nodes = []
        for result in results:
            node = nodes[result.index].node
            scores = {RAW_SCORE_KEY: float(result.score)}
            if self.keep_retrieval_score:
                scores["retrieval_score"] = nodes[result.index].score
            for key, value in scores.items():
                node.metadata[key] = value
                for excluded in (node.excluded_embed_metadata_keys, node.excluded_llm_metadata_keys):
                    if key not in excluded:  # a score is not content: keep it out of what models read
                        excluded.append(key)
            new_nodes.append(NodeWithScore(node=node, score=shown_score(result)))
        return new_nodes
