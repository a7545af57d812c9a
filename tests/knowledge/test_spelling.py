"""Spelling correction against the knowledge base's words (knowledge.spelling)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fixtures_index import CORPUS, UNRELATED_QUERIES, embedder, make_bot, open_kb  # noqa: F401

from knowledge.embeddings import SentenceTransformerEmbedder
from knowledge.index import KnowledgeBase
from knowledge.spelling import Speller, wordpiece_words

VOCABULARY = {"cancel": 5, "subscription": 9, "integrate": 3, "slack": 7, "stack": 4, "invoice": 3, "refund": 2}


@pytest.mark.parametrize(
    ("typed", "corrected"),
    [
        ("how to cancle my subscripton", "how to cancel my subscription"),  # swap, deletion
        ("how to intergrate with slak", "how to integrate with slack"),  # insertion, deletion
        ("Invoce for March", "Invoice for March"),  # capital kept
        ("rafund please", "refund please"),  # replacement
    ],
)
def test_words_one_edit_from_the_knowledge_base_are_corrected(typed: str, corrected: str) -> None:
    assert Speller(VOCABULARY).correct(typed) == corrected


def test_the_most_frequent_candidate_wins_and_known_words_stay() -> None:
    assert Speller({"slack": 7, "stack": 4}).correct("sback") == "slack"  # both one edit away
    speller = Speller(VOCABULARY, known={"stock", "price"})
    assert speller.correct("What is your stock price?") == "What is your stock price?"  # real words
    assert Speller(VOCABULARY).correct("What is your stock price?") == "What is your stack price?"
    assert speller.correct("E17 on the 2nd day, éclair, 重置密码, abc") == "E17 on the 2nd day, éclair, 重置密码, abc"
    assert speller.corrections("cancle it, slak") == {"cancle": "cancel", "slak": "slack"}


def test_the_embedding_models_whole_words_count_as_known(embedder: SentenceTransformerEmbedder) -> None:  # noqa: F811
    known = wordpiece_words(embedder.model.tokenizer)
    assert known("stock") and known("price") and known("cancel")
    assert not known("cancle") and not known("subscripton")
    assert not wordpiece_words(object())("anything")


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Iterator[KnowledgeBase]:  # noqa: F811
    opened = open_kb(make_bot(tmp_path_factory.mktemp("spelling"), CORPUS), embedder)
    assert not opened.ingest().failed
    yield opened
    opened.close()


def test_a_misspelt_question_finds_what_the_spelt_one_finds(kb: KnowledgeBase) -> None:
    typed, spelt = "how often should I descle the espreso machine", "how often should I descale the espresso machine"
    assert kb.retriever.correct_spelling(typed) == spelt
    found = kb.retriever.retrieve(typed)
    assert found and found[0].source == "machines/descaling.md"
    assert abs(found[0].score - kb.retriever.retrieve(spelt)[0].score) < 1e-5
    for query in UNRELATED_QUERIES:  # nothing to correct them towards: still nothing relevant
        assert kb.retriever.retrieve(query) == [], query


def test_spelling_correction_can_be_turned_off(kb: KnowledgeBase) -> None:
    kb.retriever.settings.spelling_correction = False
    try:
        assert kb.retriever.correct_spelling("descle") == "descle"
    finally:
        kb.retriever.settings.spelling_correction = True


def test_the_vocabulary_follows_the_index(kb: KnowledgeBase) -> None:
    words = kb.lexical.vocabulary()
    assert words["espresso"] >= 1 and "descaling" in words and "e17" not in words
    assert kb.lexical.vocabulary() is words  # cached
    assert kb.lexical.vocabulary(max_age_s=0) is words  # checked again: the index has not changed
