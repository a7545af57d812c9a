"""History-aware retrieval queries.

A follow-up such as "and for the annual plan?" after "How much does Pro cost?" retrieves
nothing useful on its own. :func:`contextualize` detects a follow-up with three general
signals and then prepends the previous user message(s) to it:

1. it is short: at most :data:`SHORT_WORDS` words (a CJK character counts as half a word);
2. it starts with a connective ("and", "but", "what about", "那", "还有"…);
3. it is at most :data:`PRONOUN_MAX_WORDS` words long and contains a pronoun that points
   back ("it", "that", "this", "them", "它", "这个"…).

A fourth signal looks at the previous message: when it asked nothing (a statement such as
"We're on the Business plan and want to set up SSO with Okta." or "I'm about to board a
10-hour flight.") and carries some content, it set the scene for this question, which
then keeps it as context (:func:`sets_context`).

When the previous message was itself a follow-up, the one before it is kept too (at most
:data:`MAX_CONTEXT_MESSAGES`). A standalone question is returned unchanged, so a change of
topic is not polluted by the old one. No rule depends on a particular knowledge base.

:func:`query_sentences` splits a message of several sentences for retrieval: support
messages often bundle a situation, a complaint and the question ("We moved offices last
month. Where do we change the billing address?"), and one embedding of the whole message
averages them. When the whole message finds nothing, the retriever tries its sentences
that carry content, each on its own (``knowledge.query_sentences``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SHORT_WORDS = 4
PRONOUN_MAX_WORDS = 10
MAX_CONTEXT_MESSAGES = 2

CONNECTIVES = (
    "and", "but", "also", "or", "so", "then", "plus", "what about", "how about", "same for",
    "what if", "else", "instead", "too", "as well",
    "et", "mais", "und", "aber", "y", "pero",
    "那", "那么", "还有", "另外", "如果", "而且", "并且", "也", "那如果", "それで", "じゃあ", "では",
)
PRONOUNS = frozenset(
    "it its it's this that those these they them their one ones there here such same "
    "它 它们 这个 那个 这些 那些".split()
)
_TOKEN = re.compile(r"[^\W\d_]+|\d+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def word_count(text: str) -> float:
    """Words in ``text``, counting each CJK character as half a word."""
    cjk = len(_CJK.findall(text))
    latin = len([t for t in _TOKEN.findall(_CJK.sub(" ", text))])
    return latin + cjk / 2


def is_follow_up(question: str) -> bool:
    """True when ``question`` probably depends on the previous message (see module doc)."""
    text = question.strip().casefold()
    if not text:
        return False
    words = word_count(text)
    if words <= SHORT_WORDS:
        return True
    stripped = text.lstrip("¿¡\"'(«“ ")
    for connective in CONNECTIVES:
        if stripped.startswith(connective):
            rest = stripped[len(connective) :]
            if _CJK.match(connective) or not rest or not rest[0].isalnum():
                return True
    if words <= PRONOUN_MAX_WORDS:
        tokens = set(_TOKEN.findall(_CJK.sub(" ", text)))
        if tokens & PRONOUNS or any(p in text for p in PRONOUNS if _CJK.match(p)):
            return True
    return False


MAX_QUERY_SENTENCES = 4
SENTENCE_MIN_WORDS = 3
# A sentence ends at . ? ! … followed by a space, or at a CJK full stop, question or exclamation mark.
_SENTENCE_END = re.compile(r"(?<=[.?!…])\s+|(?<=[。？！])")


def query_sentences(text: str) -> list[str]:
    """The sentences of ``text`` worth embedding on their own: ``[]`` for a single sentence,
    else those of at least :data:`SENTENCE_MIN_WORDS` words (a "Hi." or "Thanks!" carries
    nothing to retrieve by), at most :data:`MAX_QUERY_SENTENCES`: questions first, then the
    longest, in the message's order."""
    found = [part.strip() for part in _SENTENCE_END.split(text.strip()) if part and part.strip()]
    if len(found) < 2:
        return []
    content = [sentence for sentence in found if word_count(sentence) >= SENTENCE_MIN_WORDS]
    if len(content) > MAX_QUERY_SENTENCES:
        ranked = sorted(range(len(content)), key=lambda i: (not content[i].endswith(("?", "？")), -len(content[i])))
        content = [content[i] for i in sorted(ranked[:MAX_QUERY_SENTENCES])]
    return content


_QUESTION_START = re.compile(
    r"^(?:who|whom|whose|what|which|when|where|why|how|can|could|do|does|did|is|are|was|were|will|would|should|"
    r"shall|may|might|have|has|am|any|是否|能否|可以|怎么|如何|为什么|什么|哪)\b",
    re.IGNORECASE,
)
CONTEXT_MIN_WORDS = 5


def sets_context(message: str) -> bool:
    """True when ``message`` states a situation rather than asking: no question mark, no
    question word first, and at least :data:`CONTEXT_MIN_WORDS` words (not a bare "thanks")."""
    text = message.strip()
    if not text or "?" in text or "？" in text or word_count(text) < CONTEXT_MIN_WORDS:
        return False
    return not _QUESTION_START.match(text.lstrip("¿¡\"'(«“ "))


def contextualize(question: str, history: Sequence[str]) -> str:
    """The retrieval query for ``question`` given earlier user messages (oldest first)."""
    question = question.strip()
    previous = [m.strip() for m in history if m and m.strip()]
    if not previous or not (is_follow_up(question) or sets_context(previous[-1])):
        return question
    context = [previous[-1]]
    for message in reversed(previous[:-1]):
        if len(context) >= MAX_CONTEXT_MESSAGES or not is_follow_up(context[0]):
            break
        context.insert(0, message)
    return " ".join([*context, question])
