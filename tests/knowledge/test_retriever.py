"""Retrieval: vector, lexical (FTS5 BM25) and hybrid (RRF) search, threshold, filters."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator

import pytest
from fixtures_index import CORPUS, UNRELATED_QUERIES, embedder, make_bot, open_kb  # noqa: F401

from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.index import KnowledgeBase
from knowledge.lexical import cjk_bigrams, match_expression
from knowledge.query import contextualize, is_follow_up, query_sentences
from knowledge.retriever import RRF_K, Retriever, _fuse, identifiers_of, relevance_floor
from knowledge.settings import KnowledgeSettings
from knowledge.types import Passage

_rng = random.Random(7)
PARTS = ["brew group", "drip tray", "water tank lid", "steam wand tip", "grinder burr set", "portafilter basket",
         "tamper", "milk jug", "descaling kit", "water filter", "power cord", "bean hopper"]
SKUS = [f"{_rng.randint(10000, 99999)}-{_rng.choice('ABCDEFGH')}" for _ in PARTS]
SPARE_PARTS = "# Spare parts\n\n" + "".join(
    f"## {part.title()}\n\nSpare part {part}: order number {sku}, fits the Brewmaster 300 and 500.\n\n"
    for part, sku in zip(PARTS, SKUS)
)
FILES = {
    **CORPUS,
    "shop/spare-parts.md": SPARE_PARTS,
    "zh/reset-password.md": "# 重置密码\n\n在登录页面点击“忘记密码”，然后按照邮件中的链接操作。链接一小时内有效。\n",
    "more/faq-copy.csv": "question,answer\nHow long is the warranty?,Two years for manufacturing defects.\n",
}


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Iterator[KnowledgeBase]:
    bot = make_bot(tmp_path_factory.mktemp("retriever"), FILES)
    opened = open_kb(bot, embedder)
    report = opened.ingest()
    assert not report.failed and report.added == len(FILES)
    yield opened
    opened.close()


def sources(passages: list) -> list[str]:
    return [p.source for p in passages]


def test_finds_the_answer_in_every_mode(kb: KnowledgeBase) -> None:
    query = "how do I descale my espresso machine"
    qvec = kb.embedder.embed_query(query)
    for mode in ("hybrid", "vector", "lexical"):
        passages = kb.retriever.retrieve_by_vector(qvec, query_text=query, mode=mode)
        assert passages and passages[0].source == "machines/descaling.md", mode
        assert passages[0].score > 0.5 and passages[0].vector_score == passages[0].score


def test_exact_product_code_is_found_by_lexical_when_vector_misses_it(kb: KnowledgeBase) -> None:
    """Bare part numbers mean little to the embedding model; BM25 matches them exactly."""
    vector_misses = 0
    queries = [f"do you sell {sku}" for sku in SKUS]
    for part, query, qvec in zip(PARTS, queries, kb.embedder.embed(queries)):
        vector = kb.retriever.retrieve_by_vector(qvec, query_text=query, mode="vector", k=1, threshold=0.0)
        vector_misses += part.title() not in vector[0].section
        hybrid = kb.retriever.retrieve_by_vector(qvec, query_text=query, mode="hybrid", k=3)
        assert hybrid and hybrid[0].section == part.title(), (query, [(p.section, p.score) for p in hybrid])
        assert hybrid[0].lexical_rank == 1
    assert vector_misses >= 3  # the premise: vector search alone gets many of these wrong


def test_rrf_fusion_order_is_reciprocal_rank_fusion() -> None:
    vector_hits = {"a": 0.9, "b": 0.8, "c": 0.7}
    lexical = {"c": 12.0, "d": 11.0, "a": 3.0}
    order = _fuse(vector_hits, lexical, "hybrid", fusion="rrf")
    fused = {"a": 1 / (RRF_K + 1) + 1 / (RRF_K + 3), "b": 1 / (RRF_K + 2), "c": 1 / (RRF_K + 3) + 1 / (RRF_K + 1),
             "d": 1 / (RRF_K + 2)}
    assert order == sorted(fused, key=lambda cid: (-fused[cid], ["a", "b", "c"].index(cid) if cid in "abc" else 9))
    assert order[:2] == ["a", "c"] and _fuse(vector_hits, lexical, "lexical") == ["c", "d", "a"]
    assert _fuse(vector_hits, lexical, "vector") == ["a", "b", "c"]


def test_relative_fusion_weighs_scaled_scores() -> None:
    vector_hits = {"a": 0.62, "b": 0.60, "c": 0.30}  # a and b close, c far behind
    lexical = {"c": 20.0, "d": 4.0, "b": 2.0}  # c a strong lexical match, d and b weak ones
    order = _fuse(vector_hits, lexical, "hybrid", fusion="relative", vector_weight=0.75)
    # a: .75*1; b: .75*(.30/.32) + .25*0; c: .75*0 + .25*1; d: .25*(2/18)
    expected = {"a": 0.75, "b": 0.75 * 0.30 / 0.32, "c": 0.25, "d": 0.25 * 2 / 18}
    assert order == sorted(expected, key=lambda cid: -expected[cid]) == ["a", "b", "c", "d"]
    # Under RRF the strong lexical match c, third by vector, would come first.
    assert _fuse(vector_hits, lexical, "hybrid", fusion="rrf")[0] == "c"
    # The weight moves the balance: all on the lexical side, its order wins.
    assert _fuse(vector_hits, lexical, "hybrid", fusion="relative", vector_weight=0.0)[:2] == ["c", "d"]
    # One candidate (or equal scores) scales to 1; an empty list adds nothing.
    assert _fuse({"a": 0.5}, {}, "hybrid", fusion="relative") == ["a"]
    assert _fuse({}, {"x": 3.0, "y": 3.0}, "hybrid", fusion="relative") == ["x", "y"]
    assert _fuse({"a": 0.5, "b": 0.5}, {"b": 1.0}, "hybrid", fusion="relative") == ["b", "a"]
    with pytest.raises(ValueError, match="unknown fusion 'max'"):
        _fuse(vector_hits, lexical, "hybrid", fusion="max")


def test_fusion_setting_is_validated_and_reaches_the_retriever(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    import knowledge.retriever as retriever_module

    with pytest.raises(ValidationError, match="fusion"):
        KnowledgeSettings(fusion="max")
    with pytest.raises(ValidationError, match="vector_weight"):
        KnowledgeSettings(vector_weight=1.5)
    seen: list[tuple[str, float]] = []
    fuse = retriever_module._fuse

    def spy(*args: object, fusion: str, vector_weight: float) -> list[str]:
        seen.append((fusion, vector_weight))
        return fuse(*args, fusion=fusion, vector_weight=vector_weight)  # type: ignore[arg-type]

    monkeypatch.setattr(retriever_module, "_fuse", spy)
    monkeypatch.setattr(kb.retriever, "settings", kb.retriever.settings.model_copy(update={"fusion": "rrf"}))
    assert kb.retriever.retrieve("How do I descale the machine?", k=3, mode="hybrid")
    monkeypatch.setattr(kb.retriever, "settings", kb.retriever.settings.model_copy(
        update={"fusion": "relative", "vector_weight": 0.6}))
    assert kb.retriever.retrieve("How do I descale the machine?", k=3, mode="hybrid")
    assert seen == [("rrf", 0.75), ("relative", 0.6)]


def test_score_is_cosine_similarity_in_every_mode(kb: KnowledgeBase) -> None:
    query = "which payment methods do you accept"
    qvec = kb.embedder.embed_query(query)
    scores = {}
    for mode in ("hybrid", "vector", "lexical"):
        for passage in kb.retriever.retrieve_by_vector(qvec, query_text=query, mode=mode, threshold=0.0):
            scores.setdefault(passage.chunk_id, set()).add(round(passage.score, 4))
    assert scores and all(len(values) == 1 for values in scores.values())


def best_scores(kb: KnowledgeBase, queries: list[str]) -> list[float]:
    """The best passage's cosine similarity for each query (vector search, no threshold)."""
    return [
        kb.retriever.retrieve_by_vector(v, mode="vector", k=1, threshold=0.0)[0].score
        for v in kb.embedder.embed(queries)
    ]


def test_unrelated_questions_retrieve_nothing(kb: KnowledgeBase) -> None:
    for query, qvec in zip(UNRELATED_QUERIES, kb.embedder.embed(UNRELATED_QUERIES)):
        for mode in ("hybrid", "vector", "lexical"):
            assert kb.retriever.retrieve_by_vector(qvec, query_text=query, mode=mode) == [], (query, mode)


def test_default_threshold_separates_related_from_unrelated(kb: KnowledgeBase) -> None:
    """The documented basis of knowledge.score_threshold, on this generic corpus."""
    related = ["can I return an item", "machine shows E17", "do gift cards expire", "when is support open",
               "which grind size for espresso", "how long does shipping to Canada take", "I forgot my password"]
    best_related, best_unrelated = best_scores(kb, related), best_scores(kb, UNRELATED_QUERIES)
    threshold = kb.settings.score_threshold
    assert max(best_unrelated) < threshold < min(best_related)


def test_relevance_floor_gates_on_the_best_passage_then_holds_the_others_to_the_passage_threshold() -> None:
    assert relevance_floor(0.30, 0.35, 0.25) == 0.35  # not answerable: nothing but identifier matches passes
    assert relevance_floor(0.45, 0.35, 0.25) == 0.25  # answerable: the others need only the passage threshold
    assert relevance_floor(0.45, 0.35, 0.50) == 0.35  # never stricter than the plain threshold
    assert relevance_floor(0.45, 0.35, 0.35) == 0.35  # passage threshold = threshold: the per-passage rule


@pytest.mark.parametrize("mode", ["hybrid", "vector", "lexical"])
def test_passages_with_an_answerable_best_one_are_kept_under_the_threshold(kb: KnowledgeBase, mode: str) -> None:
    query = "how do I descale my espresso machine"
    qvec = kb.embedder.embed_query(query)
    ranked = kb.retriever.retrieve_by_vector(qvec, query_text=query, mode=mode, k=5, threshold=0.0)
    scores = sorted((p.score for p in ranked), reverse=True)
    best, second = scores[0], scores[1]
    assert best > second
    threshold = (best + second) / 2  # only the best passage reaches it on its own
    alone = kb.retriever.retrieve_by_vector(qvec, query_text=query, mode=mode, k=5, threshold=threshold,
                                            passage_threshold=threshold)
    assert [p.score for p in alone] == [best]
    lower = second - 0.01
    together = kb.retriever.retrieve_by_vector(qvec, query_text=query, mode=mode, k=5, threshold=threshold,
                                               passage_threshold=lower)
    assert {p.score for p in together} == {s for s in scores if s >= lower}
    assert len(together) >= 2 and together[0].score == best  # the confident passage first, the others after it
    # Above the best passage the question is not answerable, whatever the passage threshold.
    assert kb.retriever.retrieve_by_vector(qvec, query_text=query, mode=mode, threshold=best + 0.01,
                                           passage_threshold=0.0) == []


def test_unrelated_questions_retrieve_nothing_whatever_the_passage_threshold(kb: KnowledgeBase) -> None:
    for query, qvec in zip(UNRELATED_QUERIES, kb.embedder.embed(UNRELATED_QUERIES)):
        for mode in ("hybrid", "vector", "lexical"):
            got = kb.retriever.retrieve_by_vector(qvec, query_text=query, mode=mode, passage_threshold=0.0)
            assert got == [], (query, mode)


def test_overlapped_and_sequential_hybrid_search_agree(kb: KnowledgeBase) -> None:
    sequential = Retriever(store=kb.store, lexical=kb.lexical, embedder=kb.embedder, settings=kb.settings,
                           search_workers=0)
    for query in ["how do I descale my espresso machine", f"do you sell {SKUS[0]}", "the grinder is jammed"]:
        qvec = kb.embedder.embed_query(query)
        overlapped = kb.retriever.retrieve_by_vector(qvec, query_text=query, mode="hybrid", threshold=0.0)
        assert overlapped == sequential.retrieve_by_vector(qvec, query_text=query, mode="hybrid", threshold=0.0)


def test_source_prefix_and_kind_filters(kb: KnowledgeBase) -> None:
    query = "how long is the warranty and can I return things"
    shop = kb.retriever.retrieve(query, filters={"source": "shop/"}, threshold=0.0)
    assert shop and all(s.startswith("shop/") for s in sources(shop))
    faq = kb.retriever.retrieve(query, filters={"kind": "faq"}, threshold=0.0)
    assert faq and all(p.kind == "faq" for p in faq)
    one = kb.retriever.retrieve(query, filters={"source": "faq.csv#warranty"}, threshold=0.0)
    assert sources(one) == ["faq.csv#warranty"]
    assert kb.retriever.retrieve(query, filters={"source": "nowhere/"}) == []
    with pytest.raises(ValueError, match="known filters"):
        kb.retriever.retrieve(query, filters={"colour": "red"})


def test_the_same_faq_pair_is_returned_once(kb: KnowledgeBase) -> None:
    passages = kb.retriever.retrieve("How long is the warranty?", k=5, threshold=0.0)
    questions = [p.title for p in passages if p.kind == "faq"]
    assert questions.count("How long is the warranty?") == 1
    assert passages[0].kind == "faq" and passages[0].metadata["answer"]


def test_chinese_query_matches_through_cjk_bigrams(kb: KnowledgeBase) -> None:
    assert cjk_bigrams("重置密码") == " 重置 置密 密码 "
    passages = kb.retriever.retrieve("如何重置密码", mode="lexical", threshold=0.0)
    assert sources(passages)[:1] == ["zh/reset-password.md"]


def test_retrieve_by_vector_matches_retrieve(kb: KnowledgeBase) -> None:
    query = "the grinder is jammed"
    vector = kb.embedder.embed_query(query)
    direct = kb.retriever.retrieve(query)
    by_vector = kb.retriever.retrieve_by_vector(vector, query_text=query)
    assert [p.chunk_id for p in direct] == [p.chunk_id for p in by_vector]
    assert kb.retriever.retrieve_by_vector(vector)[0].source == "machines/error-codes.md"  # vector-only without text


def test_user_text_is_never_fts_syntax(kb: KnowledgeBase) -> None:
    for nasty in ['"unbalanced', "NEAR(a b)", "a* OR -b", "title:x", "'; DROP TABLE chunk_text; --", "()", "^"]:
        kb.lexical.search(nasty, k=5)  # no sqlite error
    assert kb.retriever.retrieve("NEAR(refund) OR title:*", mode="lexical", threshold=0)[0].source == "shop/returns.md"
    assert match_expression("foo* OR title:x") == '"foo" OR "title" OR "x"'
    assert match_expression("?!") is None
    assert kb.retriever.retrieve("   ") == []


def test_identifiers_are_code_like_words() -> None:
    assert identifiers_of("error E42 after firmware 2.4.1, part 74937-H, in 30 days") == {"e42", "2.4.1", "74937-h"}


@pytest.mark.parametrize(
    ("question", "history", "expected"),
    [
        ("and for the annual plan?", ["How much does Pro cost?"], "How much does Pro cost? and for the annual plan?"),
        ("Can I export it?", ["How do I create a board?"], "How do I create a board? Can I export it?"),
        ("How do I set up single sign-on with Okta for my team?", ["How much does Pro cost?"],
         "How do I set up single sign-on with Okta for my team?"),
        ("那年付呢？", ["专业版多少钱？"], "专业版多少钱？ 那年付呢？"),
        ("what about Android?", ["Does the app work offline?", "and on iOS?"],
         "Does the app work offline? and on iOS? what about Android?"),
        ("How do I reset my password?", [], "How do I reset my password?"),
    ],
)
def test_contextualize_prepends_history_for_follow_ups(question: str, history: list[str], expected: str) -> None:
    assert contextualize(question, history) == expected


def test_standalone_questions_are_not_follow_ups() -> None:
    assert not is_follow_up("Which payment methods do you accept for annual invoices?")
    assert is_follow_up("and Slack?")


def _assert_same_passages(got: list[Passage], expected: list[Passage], context: object) -> None:
    """The same passages in the same order; scores equal to float32 precision (Chroma hands
    back its own normalised copy of a vector, which can differ from the indexed one in the
    last bit, so a similarity computed from it can differ by about 1e-7)."""
    exact = [dataclasses.replace(p, score=0.0, vector_score=0.0) for p in got]
    assert exact == [dataclasses.replace(p, score=0.0, vector_score=0.0) for p in expected], context
    for mine, theirs in zip(got, expected):
        assert mine.score == pytest.approx(theirs.score, abs=1e-6), context
        assert (mine.vector_score is None) == (theirs.vector_score is None), context
        if mine.vector_score is not None:
            assert mine.vector_score == pytest.approx(theirs.vector_score, abs=1e-6), context


def test_passages_read_from_the_lexical_index_equal_those_read_from_chroma(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Winners and the vectors of lexical-only hits are read from the lexical index, without
    Chroma; an index built before it kept them (no vectors, or no payloads either) reads them
    from Chroma: the passages are the same every way."""
    queries = ["How do I descale the machine?", "order number " + SKUS[3], "重置密码", "How long is the warranty?"]
    chroma_reads: list[list[str]] = []
    get = kb.retriever.store.get
    monkeypatch.setattr(kb.retriever.store, "get", lambda ids, **kw: chroma_reads.append(list(ids)) or get(ids, **kw))
    mode_results = {(q, m): kb.retriever.retrieve(q, k=5, mode=m) for q in queries for m in ("hybrid", "vector", "lexical")}
    assert any(mode_results.values())
    assert chroma_reads == []
    with kb.retriever.lexical.transaction() as conn:
        saved = conn.execute("SELECT chunk_id, payload, vector FROM chunk_meta").fetchall()
    try:
        for dropped in ("vector = NULL", "payload = NULL, vector = NULL"):
            with kb.retriever.lexical.transaction() as conn:
                conn.execute(f"UPDATE chunk_meta SET {dropped}")
            for (query, mode), expected in mode_results.items():
                _assert_same_passages(kb.retriever.retrieve(query, k=5, mode=mode), expected, (query, mode, dropped))
        assert kb.retriever.lexical.stored([cid for cid, _, _ in saved]) == {}
        assert chroma_reads
    finally:
        with kb.retriever.lexical.transaction() as conn:
            conn.executemany("UPDATE chunk_meta SET payload = ?, vector = ? WHERE chunk_id = ?",
                             [(p, v, c) for c, p, v in saved])


def test_a_chunk_the_lexical_index_does_not_name_is_never_returned(kb: KnowledgeBase) -> None:
    """A chunk in the vector store that the lexical index (and so the committed manifest) does
    not name yet, as while a source is being re-ingested, is left out in every mode and by
    retrieve_by_vector."""
    from knowledge.types import Chunk

    query = "How do I descale the machine?"
    text = "Descale the machine every month: fill the tank with descaler and run the descale programme."
    pending = Chunk(id="pending-descale-chunk", source="pending.md", origin="pending.md", title="Descaling",
                    section="", text=text, embed_text=text, ordinal=0)
    vector = kb.embedder.embed_queries([query])[0]
    kb.store.upsert([pending], kb.embedder.embed([text]))
    try:
        assert kb.store.query(vector, k=1, with_data=False)[0].id == pending.id  # the vector store's best match
        for mode in ("hybrid", "vector", "lexical"):
            got = kb.retriever.retrieve(query, k=5, mode=mode, threshold=0.0)
            assert got and pending.id not in [p.chunk_id for p in got], mode
            got = kb.retriever.retrieve_by_vector(vector, query_text=query, k=5, mode=mode, threshold=0.0)
            assert got and pending.id not in [p.chunk_id for p in got], mode
    finally:
        kb.store.delete([pending.id])


def _expected_scores(kb: KnowledgeBase, passages: list[Passage], texts: list[str]) -> list[float]:
    """Each passage's best cosine similarity to any of ``texts``."""
    rows = kb.embedder.embed_queries(texts)
    stored = kb.store.embeddings([p.chunk_id for p in passages])
    return [float((rows @ stored[p.chunk_id]).max()) for p in passages]


# Three sentences about something else dilute a question's embedding (whole: about 0.2).
HOLIDAY = ("Last summer we drove across Portugal with our three children. We visited eleven towns and ate far too "
           "much ice cream on the beach. The kids still talk about the dolphins.")


def _whole_only(kb: KnowledgeBase) -> Retriever:
    return Retriever(store=kb.store, lexical=kb.lexical, embedder=kb.embedder,
                     settings=kb.settings.model_copy(update={"query_sentences": False}))


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
def test_a_message_that_finds_nothing_whole_is_tried_sentence_by_sentence(kb: KnowledgeBase, mode: str) -> None:
    message = f"{HOLIDAY} Can I send back something I never used?"
    assert _whole_only(kb).retrieve(message, mode=mode) == []  # whole: under the threshold
    passages = kb.retriever.retrieve(message, mode=mode)
    assert passages and passages[0].source == "shop/returns.md"
    assert passages[0].score >= kb.settings.score_threshold
    # Scored by the best of the whole message and its sentences.
    assert [p.score for p in passages] == pytest.approx(
        _expected_scores(kb, passages, [message, *query_sentences(message)]), abs=1e-5)


def test_a_message_that_finds_something_whole_is_not_changed_by_its_sentences(kb: KnowledgeBase) -> None:
    message = f"{HOLIDAY} How do I get into my account again?"
    for mode in ("hybrid", "vector"):
        got = kb.retriever.retrieve(message, mode=mode, threshold=0.3)
        assert got and got[0].source == "account/password.md"
        assert [(p.chunk_id, p.score) for p in got] == [
            (p.chunk_id, p.score) for p in _whole_only(kb).retrieve(message, mode=mode, threshold=0.3)]
        assert [p.score for p in got] == pytest.approx(_expected_scores(kb, got, [message]), abs=1e-5)


def test_only_the_users_own_message_is_split_when_the_query_carries_context(kb: KnowledgeBase) -> None:
    """``message``: a sentence of the earlier message (the context) is never tried alone."""
    query = f"Can I send back something I never used? {HOLIDAY}"
    assert kb.retriever.retrieve(query, message=HOLIDAY) == []
    assert sources(kb.retriever.retrieve(query))[:1] == ["shop/returns.md"]  # the context's sentence alone


def test_lexical_mode_and_given_vectors_embed_no_sentences(kb: KnowledgeBase) -> None:
    message = f"{HOLIDAY} Can I send back something I never used?"
    assert kb.retriever.retrieve_by_vector(kb.embedder.embed_query(message), query_text=message, mode="vector") == []
    lexical = kb.retriever.retrieve(message, mode="lexical", threshold=0.0, passage_threshold=0.0)
    assert [p.score for p in lexical] == pytest.approx(_expected_scores(kb, lexical, [message]), abs=1e-5)
