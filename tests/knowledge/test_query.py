"""History-aware retrieval queries: which messages are follow-ups, and what context they keep."""

from __future__ import annotations

import pytest

from knowledge.query import contextualize, is_follow_up, sets_context


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
