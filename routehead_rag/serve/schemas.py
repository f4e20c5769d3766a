"""The request and response bodies of the rerank APIs that clients already speak.

Cohere ``/v1/rerank`` and ``/v2/rerank`` (which Jina's and vLLM's rerank endpoints share):
``{model?, query, documents: [str | {text, title?}], top_n?, return_documents?, max_tokens_per_doc?,
max_tokens_per_query?}`` →
``{id, results: [{index, relevance_score, document?: {text}}], meta}``.
Hugging Face TEI ``/rerank``: ``{query, texts, raw_scores?, return_text?, truncate?}`` → ``[{index, score, text?}]``.
Types are strict (a number is not a string, ``true`` is not 1), so a wrong type is a 422 that names the field.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

RANKED = ("routehead's: true when the documents come in a retriever's ranking, best first, so that their order is "
          "weighed as first-stage evidence; by default they are a set, as the rerank APIs define them, and any order "
          "of the same documents gets the same ranking and scores.")
FIRST_STAGE_SCORES = ("routehead's: the retriever's score of each document (higher: better), weighed as first-stage "
                      "evidence in place of any order.")


class DocumentObject(BaseModel):
    """A document as an object: its ``text`` and an optional ``title`` (other fields are kept out of the prompt)."""

    model_config = ConfigDict(extra="ignore")
    text: StrictStr
    title: StrictStr | None = None


class CohereRerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: StrictStr | None = Field(default=None, description="Accepted for compatibility; the server's model answers.")
    query: StrictStr = Field(description="The question the documents are ranked for.")
    documents: list[StrictStr | DocumentObject] = Field(description="Candidates: a set, unless `ranked` is true.")
    top_n: StrictInt | None = Field(default=None, gt=0, description="Return only the best N (default: all).")
    return_documents: StrictBool = Field(default=False, description="Include each document's text in its result.")
    max_tokens_per_doc: StrictInt | None = Field(
        default=None, gt=0, description="Cohere's: cut each document to its first N tokens (on top of the server's "
                                        "own per-document budget); cut documents are listed in meta.warnings.")
    max_tokens_per_query: StrictInt | None = Field(
        default=None, gt=0, description="vLLM's: cut the query to its first N tokens; a query longer than the "
                                        "server's --max-query-tokens is refused unless cut to fit.")
    ranked: StrictBool = Field(default=False, description=RANKED)
    first_stage_scores: list[StrictFloat | StrictInt] | None = Field(default=None, description=FIRST_STAGE_SCORES)


class ResultDocument(BaseModel):
    text: str


class CohereResult(BaseModel):
    index: int
    relevance_score: float
    document: ResultDocument | None = None


class CohereRerankResponse(BaseModel):
    id: str
    results: list[CohereResult]
    meta: dict


class TEIRerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: StrictStr
    texts: list[StrictStr]
    raw_scores: StrictBool = Field(default=False, description="The engine's own scores instead of relevance in [0, 1].")
    return_text: StrictBool = False
    truncate: StrictBool | None = Field(
        default=None, description="Accepted for compatibility: documents are always cut to the server's budget, "
                                  "inside their own span, and the X-Routehead-Truncated header lists them.")
    ranked: StrictBool = Field(default=False, description=RANKED)
    first_stage_scores: list[StrictFloat | StrictInt] | None = Field(default=None, description=FIRST_STAGE_SCORES)


class TEIResult(BaseModel):
    index: int
    score: float
    text: str | None = None


class ErrorBody(BaseModel):
    error: str
