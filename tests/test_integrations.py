"""The LlamaIndex and LangChain adapters with real framework objects and the real default model.

Nothing of either framework is mocked: real ``NodeWithScore``/``Document`` objects, a real
``VectorStoreIndex`` + ``RetrieverQueryEngine`` and a real ``ContextualCompressionRetriever``; the
only stand-ins are the frameworks' own offline embeddings (``MockEmbedding``,
``DeterministicFakeEmbedding``) and ``MockLLM``, which ``response_mode="no_text"`` never calls.
Documents are one sentence each, so the whole file runs in well under a minute.
"""

from __future__ import annotations

import asyncio
import copy
import re

import numpy as np
import pytest

for _module, _folder in (("llama_index.postprocessor.routehead", "llama-index-postprocessor-routehead"),
                         ("langchain_routehead", "langchain-routehead")):
    pytest.importorskip(_module, reason=f"pip install -e integrations/{_folder} (make setup does)")

from langchain_classic.retrievers import ContextualCompressionRetriever  # noqa: E402
from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402
from langchain_routehead import RouteHeadRerank as LangChainRerank  # noqa: E402
from llama_index.core import MockEmbedding, VectorStoreIndex  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.response_synthesizers.no_text import NoText  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode  # noqa: E402
from llama_index.postprocessor.routehead import RouteHeadRerank as LlamaIndexRerank  # noqa: E402

from routehead_rag import RouteHeadReranker  # noqa: E402
from routehead_rag.adapters import shown_score  # noqa: E402

QUERY = "What causes scurvy?"
TEXTS = ["Paris is the capital and largest city of France.",
         "Scurvy is a disease caused by a lack of vitamin C in the diet.",
         "The mitochondrion is the powerhouse of the cell.",
         "Bananas are a good source of potassium."]


@pytest.fixture(scope="module")
def li_rerank() -> LlamaIndexRerank:
    return LlamaIndexRerank(top_n=2)  # no model argument: the embedded default model


@pytest.fixture(scope="module")
def lc_rerank() -> LangChainRerank:
    return LangChainRerank(top_n=2)


@pytest.fixture(scope="module")
def li_expected(li_rerank) -> list[tuple[str, float]]:
    """``(node id, score)`` that the engine itself gives for the nodes' EMBED texts, best first, top 2."""
    nodes = make_nodes()
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    assert "secret" not in texts[0] and "source: doc0" in texts[0]
    return [(nodes[r.index].node.node_id, shown_score(r)) for r in li_rerank.reranker.rerank(QUERY, texts, top_n=2)]


@pytest.fixture(scope="module")
def lc_expected(lc_rerank) -> list[tuple[str, float]]:
    """``(document id, score)`` that the engine itself gives for the page contents, best first, top 2."""
    return [(f"d{r.index}", shown_score(r)) for r in lc_rerank.reranker.rerank(QUERY, TEXTS, top_n=2)]


def make_nodes() -> list[NodeWithScore]:
    """Retrieval results, best first, with metadata: one key is excluded from EMBED text, so EMBED differs from ALL."""
    return [NodeWithScore(node=TextNode(id_=f"n{i}", text=text, metadata={"source": f"doc{i}", "secret": "x" * 20},
                                        excluded_embed_metadata_keys=["secret"]), score=0.9 - i / 10)
            for i, text in enumerate(TEXTS)]


def make_documents() -> list[Document]:
    return [Document(id=f"d{i}", page_content=text, metadata={"source": f"doc{i}", "tags": ["x"]})
            for i, text in enumerate(TEXTS)]


class Recorder(BaseEventHandler):
    events: list = []

    def handle(self, event, **kwargs) -> None:
        if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
            self.events.append(event)


async def run_with_ticker(coroutine):
    """Await ``coroutine`` while a ticker counts 2 ms sleeps: ``(result, ticks)``; ticks stay ~0 if it blocks."""
    ticks, done = 0, False

    async def ticker():
        nonlocal ticks
        while not done:
            await asyncio.sleep(0.002)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        result = await coroutine
    finally:
        done = True
        await task
    return result, ticks


# LlamaIndex

def test_llamaindex_package_merges_into_the_llama_index_namespace(li_rerank):
    import llama_index
    import llama_index.core
    import llama_index.postprocessor

    # llama_index and llama_index.postprocessor are namespace packages (no __init__.py), shared with llama-index-core
    assert llama_index.__file__ is None and llama_index.postprocessor.__file__ is None
    assert isinstance(li_rerank, BaseNodePostprocessor)
    assert LlamaIndexRerank.class_name() == "RouteHeadRerank"
    assert li_rerank.to_dict()["class_name"] == "RouteHeadRerank"


def test_llamaindex_scores_are_the_engines_on_embed_text_sorted_and_cut(li_rerank, li_expected):
    nodes = make_nodes()
    out = li_rerank.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))

    assert [(n.node.node_id, n.score) for n in out] == [(i, pytest.approx(s, rel=1e-9)) for i, s in li_expected]
    assert all(type(n.score) is float for n in out)
    assert out[0].score >= out[1].score and len(out) == 2
    assert [n.score for n in nodes] == pytest.approx([0.9, 0.8, 0.7, 0.6])  # the incoming list is left as it was
    assert "retrieval_score" not in out[0].node.metadata  # keep_retrieval_score is off by default


def test_llamaindex_missing_query_bundle_is_a_value_error(li_rerank):
    with pytest.raises(ValueError, match="query"):
        li_rerank.postprocess_nodes(make_nodes())
    with pytest.raises(ValueError, match="query"):
        li_rerank.postprocess_nodes([])


def test_llamaindex_empty_list_gives_empty_list(li_rerank):
    assert li_rerank.postprocess_nodes([], query_str=QUERY) == []


def test_both_adapters_score_by_the_calibrated_relevance_and_keep_the_engines_score(li_rerank, lc_rerank):
    """The default engine has a shipped calibration: the frameworks see relevance scores in [0, 1], which a
    ``similarity_cutoff`` can threshold, and the engine's own score stays in metadata, out of the models' text."""
    nodes = make_nodes()
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    engine = li_rerank.reranker.rerank(QUERY, texts, top_n=2)
    assert all(r.relevance_score is not None and 0 <= r.relevance_score <= 1 for r in engine)
    out = li_rerank.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.score for n in out] == pytest.approx([r.relevance_score for r in engine], rel=1e-9)
    assert [n.node.metadata["routehead_score"] for n in out] == pytest.approx([r.score for r in engine], rel=1e-9)
    assert "routehead_score" not in out[0].node.get_content(metadata_mode=MetadataMode.LLM)
    docs = lc_rerank.compress_documents(make_documents(), QUERY)
    engine = lc_rerank.reranker.rerank(QUERY, TEXTS, top_n=2)
    assert [d.metadata["relevance_score"] for d in docs] == pytest.approx([r.relevance_score for r in engine], rel=1e-9)
    assert [d.metadata["routehead_score"] for d in docs] == pytest.approx([r.score for r in engine], rel=1e-9)


@pytest.mark.parametrize("options", [{"max_doc_words": 60}, {"mode": "static"}, {"mode": "all"}])
def test_both_adapters_give_scores_in_0_1_in_every_mode_and_setting(options, recwarn):
    """The README's examples (60 words, every mode) hand their framework [0, 1] scores, never the engine's own: where
    no model was fitted for the setup, the one fitted across settings gives them."""
    out = LlamaIndexRerank(top_n=4, **options).postprocess_nodes(make_nodes(), query_str=QUERY)
    assert len(out) == 4 and all(0 <= n.score <= 1 for n in out)
    assert out[0].node.node_id == "n1"  # the scurvy sentence
    docs = LangChainRerank(top_n=4, **options).compress_documents(make_documents(), QUERY)
    assert len(docs) == 4 and all(0 <= d.metadata["relevance_score"] <= 1 for d in docs)


def test_llamaindex_keep_retrieval_score_goes_to_metadata_and_not_into_text(li_rerank):
    keeper = LlamaIndexRerank(reranker=li_rerank.reranker, top_n=2, keep_retrieval_score=True)
    nodes = make_nodes()
    incoming = {n.node.node_id: n.score for n in nodes}
    out = keeper.postprocess_nodes(nodes, query_str=QUERY)
    for n in out:
        assert n.node.metadata["retrieval_score"] == incoming[n.node.node_id]
        assert "retrieval_score" not in n.node.get_content(metadata_mode=MetadataMode.EMBED)
        assert "retrieval_score" not in n.node.get_content(metadata_mode=MetadataMode.LLM)


def test_llamaindex_emits_rerank_start_and_end_events(li_rerank):
    recorder, root = Recorder(events=[]), get_dispatcher()
    root.add_event_handler(recorder)
    try:
        nodes = make_nodes()
        out = li_rerank.postprocess_nodes(nodes, query_str=QUERY)
    finally:
        root.event_handlers.remove(recorder)
    start, end = recorder.events
    assert isinstance(start, ReRankStartEvent) and isinstance(end, ReRankEndEvent)
    assert start.query.query_str == QUERY and start.top_n == 2 and len(start.nodes) == len(TEXTS)
    assert start.model_name == li_rerank.reranker.backbone.name
    assert [n.node.node_id for n in end.nodes] == [n.node.node_id for n in out]


def test_llamaindex_query_engine_runs_retriever_then_reranker_without_an_llm(li_rerank):
    nodes = [n.node for n in make_nodes()]
    index = VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8))
    engine = RetrieverQueryEngine(retriever=index.as_retriever(similarity_top_k=len(nodes)),
                                  response_synthesizer=NoText(llm=MockLLM()), node_postprocessors=[li_rerank])
    response = engine.query(QUERY)
    assert len(response.source_nodes) == 2 and all(type(n.score) is float for n in response.source_nodes)
    assert response.source_nodes[0].score >= response.source_nodes[1].score
    assert "n1" in {n.node.node_id for n in response.source_nodes}  # the scurvy sentence survives the cut

    async_response = asyncio.run(engine.aquery(QUERY))  # the async path: apostprocess_nodes
    assert [n.node.node_id for n in async_response.source_nodes] == [n.node.node_id for n in response.source_nodes]


def test_llamaindex_async_matches_sync_and_does_not_block_the_event_loop(li_rerank, li_expected):
    out, ticks = asyncio.run(run_with_ticker(li_rerank.apostprocess_nodes(make_nodes(), query_str=QUERY)))
    assert [(n.node.node_id, n.score) for n in out] == [(i, pytest.approx(s, rel=1e-9)) for i, s in li_expected]
    assert ticks >= 5, "the event loop did not run while the reranker worked"


# LangChain

def test_langchain_returns_sorted_scored_copies_cut_to_top_n(lc_rerank, lc_expected):
    assert isinstance(lc_rerank, BaseDocumentCompressor)
    docs = make_documents()
    before = copy.deepcopy(docs)

    out = lc_rerank.compress_documents(docs, QUERY)

    scores = [d.metadata["relevance_score"] for d in out]
    assert [(d.id, d.metadata["relevance_score"]) for d in out] == [(i, pytest.approx(s, rel=1e-9))
                                                                    for i, s in lc_expected]
    assert all(type(s) is float for s in scores) and scores[0] >= scores[1] and len(out) == 2
    source = {d.id: d for d in docs}
    for d in out:
        assert d is not source[d.id] and d.page_content == source[d.id].page_content
        assert d.metadata["tags"] == ["x"] and d.metadata["tags"] is not source[d.id].metadata["tags"]  # deep copy
    out[0].metadata["tags"].append("changed")
    assert docs == before  # the inputs are untouched


def test_langchain_empty_list_and_top_n_none(lc_rerank):
    assert lc_rerank.compress_documents([], QUERY) == []
    everything = LangChainRerank(reranker=lc_rerank.reranker, top_n=None).compress_documents(make_documents(), QUERY)
    assert sorted(d.id for d in everything) == ["d0", "d1", "d2", "d3"]
    scores = [d.metadata["relevance_score"] for d in everything]
    assert scores == sorted(scores, reverse=True)


def test_langchain_inside_contextual_compression_retriever_sync_and_async(lc_rerank):
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
    store.add_documents(make_documents())
    retriever = ContextualCompressionRetriever(base_compressor=lc_rerank,
                                               base_retriever=store.as_retriever(search_kwargs={"k": len(TEXTS)}))
    out = retriever.invoke(QUERY)
    assert len(out) == 2 and "d1" in {d.id for d in out}
    assert all(type(d.metadata["relevance_score"]) is float for d in out)
    assert all("relevance_score" not in row["metadata"] for row in store.store.values())  # the store's dicts untouched

    async_out = asyncio.run(retriever.ainvoke(QUERY))
    assert [d.id for d in async_out] == [d.id for d in out]


def test_langchain_async_matches_sync_and_does_not_block_the_event_loop(lc_rerank, lc_expected):
    out, ticks = asyncio.run(run_with_ticker(lc_rerank.acompress_documents(make_documents(), QUERY)))
    assert [(d.id, d.metadata["relevance_score"]) for d in out] == [(i, pytest.approx(s, rel=1e-9))
                                                                    for i, s in lc_expected]
    assert ticks >= 5, "the event loop did not run while the reranker worked"


# One engine for both

def test_adapters_share_one_engine_and_one_backbone(li_rerank, lc_rerank, default_reranker):
    assert li_rerank.reranker.backbone is lc_rerank.reranker.backbone is default_reranker.backbone
    engine = li_rerank.reranker
    shared_li, shared_lc = LlamaIndexRerank(reranker=engine, top_n=3), LangChainRerank(reranker=engine, top_n=3)
    assert shared_li.reranker is engine and shared_lc.reranker is engine
    li_ids = [n.node.node_id for n in shared_li.postprocess_nodes(
        [NodeWithScore(node=TextNode(id_=f"d{i}", text=t)) for i, t in enumerate(TEXTS)], query_str=QUERY)]
    assert li_ids == [d.id for d in shared_lc.compress_documents(make_documents(), QUERY)]  # same texts, same ranking


@pytest.mark.parametrize("adapter", [LlamaIndexRerank, LangChainRerank])
def test_shared_engine_and_engine_options_do_not_mix(adapter, default_reranker):
    with pytest.raises(ValueError, match="reranker"):
        adapter(reranker=default_reranker, max_doc_words=50)
    with pytest.raises(TypeError, match="RouteHeadReranker"):
        adapter(reranker="SmolLM2")
    assert isinstance(default_reranker, RouteHeadReranker)


# Options checked as the engine checks them (pydantic's lax mode alone would take True as 1, "3" and 2.0 as ints)

@pytest.mark.parametrize("adapter", [LlamaIndexRerank, LangChainRerank])
@pytest.mark.parametrize("top_n", [True, False, np.True_, 2.0, np.float64(2.0), 2.5, "3", 0, -1])
def test_adapters_refuse_top_n_the_engine_refuses(adapter, top_n, default_reranker):
    with pytest.raises(ValueError, match=r"top_n must be a positive integer( or None)?, not "):
        adapter(reranker=default_reranker, top_n=top_n)
    with pytest.raises(ValueError, match=r"top_n must be a positive integer"):  # the engine's own wording
        default_reranker.rerank(QUERY, TEXTS, top_n=top_n)


def test_langchain_takes_top_n_none_and_llamaindex_does_not(default_reranker):
    assert LangChainRerank(reranker=default_reranker, top_n=None).top_n is None
    with pytest.raises(ValueError, match=r"top_n must be a positive integer, not None"):
        LlamaIndexRerank(reranker=default_reranker, top_n=None)


@pytest.mark.parametrize("top_n", [np.int64(2), np.int32(2), np.uint8(2)])
def test_adapters_take_numpy_integers_as_ints(top_n, default_reranker):
    li, lc = LlamaIndexRerank(reranker=default_reranker, top_n=top_n), LangChainRerank(reranker=default_reranker, top_n=top_n)
    assert type(li.top_n) is int and type(lc.top_n) is int and li.top_n == lc.top_n == 2
    assert len(li.postprocess_nodes(make_nodes(), query_str=QUERY)) == 2
    assert len(lc.compress_documents(make_documents(), QUERY)) == 2


@pytest.mark.parametrize("adapter", [LlamaIndexRerank, LangChainRerank])
def test_adapters_check_engine_options_as_the_engine(adapter, default_reranker):
    for name, value in (("max_doc_words", True), ("max_tokens", 512.0), ("window_size", "4"), ("max_doc_words", 0)):
        with pytest.raises(ValueError, match=rf"{name} must be a positive integer or None, not {re.escape(repr(value))}"):
            adapter(**{name: value})
    with pytest.raises(ValueError, match=r"heads\[1\] is True; each head must be an index"):
        adapter(heads=[3, True])
    with pytest.raises(ValueError, match=r"heads\[0\] is 1.0"):
        adapter(heads=[1.0])
    with pytest.raises(ValueError, match=r"heads must be a list of head indices"):
        adapter(heads="3,4")
    numpy_options = adapter(heads=np.array([133, 139]), max_doc_words=np.int64(40), window_size=np.int16(3))
    engine = numpy_options.reranker
    assert engine.heads == [133, 139] and engine.mode == "static" and engine.backbone is default_reranker.backbone
    assert engine.settings.max_doc_words == 40 and type(engine.settings.max_doc_words) is int
    assert engine.settings.window_size == 3
