"""When a conversation goes to a human: the escalation policy.

Three signals, each general rather than tuned to one help centre: an explicit request for
a person, strong frustration (legal threats, anger), and repeated unanswered questions in
one conversation. A trained classifier (``escalation.classifier``) can be added on top.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from botkit.config import EscalationSettings

_PERSON = r"(human|person|agent|representative|rep|operator|manager|supervisor|someone|somebody|staff|support team|customer service)"
_EXPLICIT = [
    re.compile(rf"\b(talk|speak|chat|get through)\s+(to|with)\s+(a |an |the |some |your )?(real |actual |live )?{_PERSON}\b", re.I),
    re.compile(rf"\b(connect|transfer|put|pass|forward)\s+me\s+(to|with|through to)\s+(a |an |the |your )?(real |actual |live )?{_PERSON}\b", re.I),
    re.compile(r"\b(get|give|want|need|request|see)\s+(me\s+)?(a |an |the )?(real |actual |live )?(human|agent|representative|operator|supervisor)\b", re.I),
    re.compile(r"\b(real|actual|live)\s+(human|person|agent|people)\b", re.I),
    re.compile(r"\bescalate\b", re.I),
    re.compile(r"^\W*(human|agent|operator|representative)\W*(please|pls|now|asap)?\W*$", re.I),
    re.compile(r"\b(you are|you're|is this) (just )?(a )?(bot|robot|machine)\b.*\b(human|person)\b", re.I),
    re.compile(r"(人工|真人|转人工|人工客服)"),
    re.compile(r"\b(mit einem menschen|mitarbeiter sprechen|hablar con (una persona|un humano|un agente)|parler (à|a) (un humain|un conseiller|quelqu'un))\b", re.I),
]
_ANGER = [
    re.compile(r"\b(lawyer|attorney|sue|suing|lawsuit|legal action|court|ombudsman|chargeback|report you)\b", re.I),
    re.compile(r"\b(unacceptable|ridiculous|furious|outrageous|scam|fraud|useless|worst|disgusting)\b", re.I),
    re.compile(r"\b(fuck\w*|shit\w*|damn|wtf|crap)\b", re.I),
    re.compile(r"\b(third|3rd|fourth|fifth) time\b|\bagain and again\b|\bkeep(s)? (telling|asking)\b", re.I),
]


@dataclass(frozen=True)
class Decision:
    """Whether to hand off, and why (shown to agents)."""

    escalate: bool
    reason: str = ""


def wants_human(text: str) -> bool:
    """An explicit request to talk to a person."""
    return any(pattern.search(text) for pattern in _EXPLICIT)


def is_angry(text: str) -> bool:
    """Strong frustration: a legal threat, insults, profanity, or shouting."""
    if sum(1 for pattern in _ANGER if pattern.search(text)) >= 1:
        return True
    letters = [c for c in text if c.isalpha()]
    shouting = len(letters) >= 12 and sum(c.isupper() for c in letters) / len(letters) > 0.8
    return shouting and "!" in text


class EscalationPolicy:
    """Decides, before answering, whether a message should go to a human."""

    def __init__(self, settings: EscalationSettings, classifier: object | None = None) -> None:
        self.settings = settings
        self.classifier = classifier

    def before_answer(self, text: str) -> Decision:
        """Check the user's message itself."""
        if not self.settings.enabled:
            return Decision(False)
        if wants_human(text):
            return Decision(True, "asked for a person")
        if is_angry(text):
            return Decision(True, "frustrated customer")
        predict = getattr(self.classifier, "escalation_probability", None)
        if predict is not None and predict(text) >= self.settings.classifier_threshold:
            return Decision(True, "escalation classifier")
        return Decision(False)

    def after_abstention(self, consecutive_abstentions: int) -> Decision:
        """Check the run of unanswered questions after the bot abstained."""
        if self.settings.enabled and consecutive_abstentions >= self.settings.max_abstentions:
            return Decision(True, f"{consecutive_abstentions} questions in a row the bot could not answer")
        return Decision(False)
