"""The extractive backend: FAQ answers, cited sentences, abstention, no HTML."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from botkit.backends.base import ChatMessage, Prompt
from botkit.backends.extractive import ABSTAIN_MESSAGE, ExtractiveBackend, ExtractiveOptions
from knowledge.types import Passage

ARTICLE_PASSWORD = """# Resetting your password

If you forgot your password, you can reset it from the sign-in page. Our support team never asks for your password.

To reset your password:
1. Open the sign-in page and click Forgot password.
2. Enter the email address of your account.
3. Follow the link we email you.

The link expires after 24 hours. If it does not arrive, check your spam folder.
"""

ARTICLE_SHIPPING = """# Shipping

We ship to the United States, Canada and the European Union. Orders placed before 2pm ship the same day.
Standard shipping takes 3-5 business days. Express shipping costs $15 and arrives in 1-2 business days.
Tracking numbers are emailed once your parcel leaves our warehouse.
"""


def article(text: str, n: int = 1, **kwargs: object) -> Passage:
    return Passage(f"c{n}", f"doc{n}.md", f"Doc {n}", "", text, 0.5, **kwargs)  # type: ignore[arg-type]


def ask(question: str, passages: list[Passage], **options: object) -> object:
    backend = ExtractiveBackend(options=ExtractiveOptions(**options))  # type: ignore[arg-type]
    return backend.answer(question, passages)


async def test_faq_hit_returns_the_answer_verbatim_with_citation() -> None:
    faq = Passage("f1", "faq.csv#refunds", "How long do refunds take?", "",
                  "Q: How long do refunds take?\nA: Refunds reach your card within 5-10 business days.", 0.8, kind="faq")
    prompt = Prompt([ChatMessage("user", "how long does a refund take")], "how long does a refund take",
                    [faq, article(ARTICLE_SHIPPING, 2)])
    completion = await ExtractiveBackend().generate(prompt, timeout=1)
    assert completion.text == "Refunds reach your card within 5-10 business days. [1]"
    assert completion.cited == (1,) and not completion.abstained
    assert completion.backend == "extractive"


def test_faq_answer_from_metadata() -> None:
    faq = Passage("f1", "faq.csv#hours", "When is support open?", "", "Q: When is support open?\nA: (chunk)", 0.8,
                  kind="faq", metadata={"answer": "Support is open around the clock."})
    completion = ask("When is support open?", [faq])
    assert completion.text == "Support is open around the clock. [1]"  # type: ignore[attr-defined]


def test_article_answer_contains_the_fact_and_cites_it() -> None:
    completion = ask("How much does express shipping cost?", [article(ARTICLE_SHIPPING), article(ARTICLE_PASSWORD, 2)])
    assert "$15" in completion.text  # type: ignore[attr-defined]
    assert completion.text.endswith("[1]")  # type: ignore[attr-defined]
    assert completion.cited == (1,)  # type: ignore[attr-defined]
    assert "password" not in completion.text.lower()  # type: ignore[attr-defined]
    assert len(completion.text) <= 600  # type: ignore[attr-defined]


def test_sentences_stay_in_document_order_and_on_topic() -> None:
    text = ask("When do I get a tracking number for my parcel?", [article(ARTICLE_SHIPPING)]).text  # type: ignore[attr-defined]
    assert text.startswith("Tracking numbers are emailed once your parcel leaves our warehouse.")
    assert "Canada" not in text


def test_numbered_steps_are_kept_together() -> None:
    text = ask("How do I reset my password?", [article(ARTICLE_PASSWORD)]).text  # type: ignore[attr-defined]
    assert "To reset your password:\n1. Open the sign-in page" in text
    assert "2. Enter the email address" in text and "3. Follow the link" in text


def test_second_relevant_article_is_cited_too() -> None:
    returns = article("Returns are free within 30 days. Refunds for returns reach your card in 5-10 days.", 2)
    refunds = article("Refunds are issued to the original payment method. Refunds for returns take 5-10 days.", 1)
    completion = ask("how long do refunds for returns take", [refunds, returns])
    assert completion.cited == (1, 2)  # type: ignore[attr-defined]
    assert "[1]" in completion.text and "[2]" in completion.text  # type: ignore[attr-defined]


@pytest.mark.parametrize("passages", [[], [article(ARTICLE_SHIPPING), article(ARTICLE_PASSWORD, 2)]])
def test_no_or_weak_passages_abstain_and_offer_a_human(passages: list[Passage]) -> None:
    completion = ask("Can I pay with bitcoin?", passages)
    assert completion.abstained  # type: ignore[attr-defined]
    assert completion.text == ABSTAIN_MESSAGE  # type: ignore[attr-defined]
    assert "talk to a human" in completion.text and completion.cited == ()  # type: ignore[attr-defined]


def test_abstain_message_is_configurable() -> None:
    completion = ask("Can I pay with bitcoin?", [], abstain_message="Not covered, sorry.")
    assert completion.text == "Not covered, sorry."  # type: ignore[attr-defined]


def test_vector_score_vouches_for_a_paraphrase() -> None:
    passage = article("Sign-in problems are usually solved by clearing cookies. Try another browser too.",
                      vector_score=0.72)
    completion = ask("I cannot log on", [passage])
    assert not completion.abstained  # type: ignore[attr-defined]
    assert completion.text.startswith("Sign-in problems are usually solved")  # type: ignore[attr-defined]
    assert ask("I cannot log on", [passage], min_vector_score=None).abstained  # type: ignore[attr-defined]


def test_never_returns_html_markup() -> None:
    hostile = (
        "<p>Express <b>shipping</b> costs $15.</p><script>alert('x')</script>"
        " Express shipping &lt;img src=x onerror=alert(1)&gt; arrives fast. <scr<script>ipt>alert(2)</script>"
    )
    faq = Passage("f", "faq#x", "Express shipping?", "", "Q: Express shipping?\nA: <a href='javascript:x'>Yes</a>, $15.",
                  0.9, kind="faq")
    for passages in ([article(hostile)], [faq]):
        text = ask("How much is express shipping?", passages).text  # type: ignore[attr-defined]
        assert not re.search(r"<\s*[A-Za-z/!?]", text), text
        assert "alert('x')" not in text
    assert "$15" in ask("How much is express shipping?", [article(hostile)]).text  # type: ignore[attr-defined]


def test_options_forbid_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        ExtractiveOptions(min_overlapp=0.2)  # type: ignore[call-arg]


def test_capabilities() -> None:
    assert ExtractiveBackend.needs_llm_prompt is False
    assert ExtractiveBackend.needs_network is False
