"""Retrieval queries: which messages are follow-ups, what context they keep, and which
sentences of a message are embedded on their own."""

from __future__ import annotations

import pytest

from knowledge.query import MAX_QUERY_SENTENCES, contextualize, is_follow_up, query_sentences, sets_context


@pytest.mark.parametrize(
    "message",
    [
        "We're on the Business plan and want to set up SSO with Okta.",
        "I'm about to get on a 10-hour flight and want to work from my Android phone.",
        "I deleted my account yesterday by accident",
        "我们团队有十个人，每个月付费。",
    ],
)
def test_a_statement_sets_the_context_of_the_next_question(message: str) -> None:
    assert sets_context(message)
    question = "What ACS URL do I give the identity provider?"
    assert contextualize(question, [message]) == f"{message} {question}"


@pytest.mark.parametrize(
    "message",
    ["How much does Pro cost?", "Can I export a board", "Thanks, that worked!", "ok great", "怎么取消订阅？", ""],
)
def test_questions_and_acknowledgements_set_no_context(message: str) -> None:
    assert not sets_context(message)
    question = "How do I set up single sign-on with Okta for my whole team?"
    assert contextualize(question, [message]) == question


def test_this_points_back() -> None:
    assert is_follow_up("Can I turn this off for guests?")
    assert contextualize("Can I turn this off for guests?", ["How do I enforce 2FA?"]) == (
        "How do I enforce 2FA? Can I turn this off for guests?"
    )


def test_only_the_latest_statement_counts() -> None:
    history = ["We have 10 people on Pro, billed monthly.", "How do I reset my password?"]
    assert contextualize("Where do I find my invoices for last year?", history) == (
        "Where do I find my invoices for last year?"
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("How do I reset my password?", []),  # one sentence: embedded whole only
        ("Hi. How do I reset my password?", ["How do I reset my password?"]),  # "Hi." carries nothing
        ("We moved offices last week. Our invoices still show the old address. Can we change it?",
         ["We moved offices last week.", "Our invoices still show the old address.", "Can we change it?"]),
        ("我上周换了手机。怎么重新登录两步验证？", ["我上周换了手机。", "怎么重新登录两步验证？"]),
        ("version 2.4.1 fails to sync", []),  # dots inside a word end no sentence
    ],
)
def test_query_sentences_splits_messages_of_several_sentences(message: str, expected: list[str]) -> None:
    assert query_sentences(message) == expected


def test_query_sentences_keeps_at_most_four_questions_first_in_message_order() -> None:
    message = ("I have a long story to tell you today. It started on Monday morning early. Then the app crashed twice. "
               "Is this a known bug? My colleague has the same problem too. Can you fix it soon?")
    got = query_sentences(message)
    assert len(got) == MAX_QUERY_SENTENCES
    assert "Is this a known bug?" in got and "Can you fix it soon?" in got
    positions = [message.index(sentence) for sentence in got]
    assert positions == sorted(positions)
