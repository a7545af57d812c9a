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


SSO_SECTION = """Orbitly works with any SAML 2.0 identity provider. We have step-by-step guides for:

- Okta
- Microsoft Entra ID
- Google Workspace
"""


def test_a_question_naming_a_section_gets_the_whole_short_section() -> None:
    passage = Passage("s1", "sso.md", "Single sign-on", "Supported identity providers", SSO_SECTION, 0.6)
    text = ask("Which identity providers are supported?", [passage]).text  # type: ignore[attr-defined]
    assert "- Okta" in text and "- Google Workspace" in text and "SAML 2.0" in text


def test_a_sentence_that_opens_a_list_brings_the_list() -> None:
    passage = article(
        "Webhooks notify your server about changes. You can subscribe to these events:\n\n"
        "- task.created\n- task.completed\n- comment.created\n\nEach request is signed.", vector_score=0.6
    )
    text = ask("Which events can I subscribe to?", [passage]).text  # type: ignore[attr-defined]
    assert "- task.created" in text and "- comment.created" in text


def test_an_faq_restating_the_question_leads_even_when_ranked_lower() -> None:
    faq = Passage("f1", "faq.csv#failed", "What happens if my payment fails?", "",
                  "Q: What happens if my payment fails?\nA: We retry 3 times, then move you to the Free plan.", 0.9,
                  kind="faq", vector_score=0.9)
    reasons = article("Payments fail when a card has expired or has no funds left for the payment.", vector_score=0.65)
    completion = ask("What happens if my card payment fails?", [reasons, faq])
    assert completion.text == "We retry 3 times, then move you to the Free plan. [2]"  # type: ignore[attr-defined]


def test_a_name_no_passage_mentions_abstains() -> None:
    pricing = article("Pro costs $12 per user per month. Business costs $24 per user per month.", vector_score=0.55)
    assert ask("How much does Asana Premium cost per user?", [pricing]).abstained  # type: ignore[attr-defined]
    assert not ask("How much does Pro cost per user?", [pricing]).abstained  # type: ignore[attr-defined]
    assert not ask("Pricing: how much does it cost per user?", [pricing]).abstained  # type: ignore[attr-defined]
    assert not ask("How much does Asana cost?", [pricing], unknown_names_abstain=False).abstained  # type: ignore[attr-defined]


def test_a_misspelt_word_matches_a_word_one_edit_away() -> None:
    text = ask("how do i change my pasword", [article(ARTICLE_SHIPPING), article(ARTICLE_PASSWORD, 2)]).text  # type: ignore[attr-defined]
    assert "Forgot password" in text and "[2]" in text


def test_chinese_questions_match_by_character_pairs() -> None:
    zh = article("所有价格均以美元计价。每个新建的工作区都可以免费试用商业版 14 天，无需绑定信用卡。试用结束后工作区会自动转为免费版。")
    completion = ask("免费试用有多长时间？", [zh])
    assert not completion.abstained  # type: ignore[attr-defined]
    assert completion.text.startswith("每个新建的工作区都可以免费试用商业版 14 天")  # type: ignore[attr-defined]
    assert "美元" not in completion.text  # type: ignore[attr-defined]


def test_sentences_are_scored_by_meaning_with_an_embedding_model() -> None:
    import numpy as np

    topics = {"parcel": 0, "tracking": 0, "where": 0, "ship": 1, "canada": 1, "express": 2, "costs": 2}

    def embed(texts: list[str]) -> np.ndarray:  # a toy model: one dimension per topic
        vectors = np.full((len(texts), 4), 0.05, dtype=np.float32)
        for row, text in enumerate(texts):
            for word, dim in topics.items():
                if word in text.lower():
                    vectors[row, dim] += 1.0
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    backend = ExtractiveBackend(embed=embed)
    completion = backend.answer("Where is my parcel?", [article(ARTICLE_SHIPPING, vector_score=0.6)])
    assert completion.text.startswith("Tracking numbers are emailed")  # no shared content word: by meaning
    assert "Express" not in completion.text


def test_a_follow_up_is_answered_with_the_earlier_question_in_mind() -> None:
    passage = article(ARTICLE_SHIPPING, vector_score=0.6)
    completion = ask_with_history("and how much is the express option?", ["How fast is shipping?"], [passage])
    assert "$15" in completion.text


async def test_generate_reads_earlier_user_messages_from_the_prompt() -> None:
    messages = [ChatMessage("system", "rules"), ChatMessage("user", "How fast is shipping?"),
                ChatMessage("assistant", "3-5 business days."), ChatMessage("user", "and express?")]
    prompt = Prompt(messages, "and express?", [article(ARTICLE_SHIPPING, vector_score=0.6)])
    completion = await ExtractiveBackend().generate(prompt, timeout=1)
    assert "Express shipping costs $15" in completion.text and not completion.abstained


def ask_with_history(question: str, history: list[str], passages: list[Passage]) -> object:
    return ExtractiveBackend().answer(question, passages, history=history)


def test_the_section_whose_own_heading_matches_leads() -> None:
    rules = Passage("p1", "pw.md", "Passwords", "Forgotten password > Password rules",
                    "Passwords need at least 10 characters and cannot reuse your last 5 passwords.", 0.5, vector_score=0.47)
    reset = Passage("p2", "pw.md", "Passwords", "Forgotten password",
                    "Click Forgot password on the sign-in page; the link we email is valid for 60 minutes.", 0.4,
                    vector_score=0.4)
    completion = ask("I have forgotten my password", [rules, reset])
    assert completion.text.startswith("Click Forgot password")  # type: ignore[attr-defined]
    assert completion.cited[0] == 2  # type: ignore[attr-defined]
