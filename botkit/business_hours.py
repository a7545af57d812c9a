"""Business hours: when people answer handed-off conversations (the ``business_hours:`` section).

Outside them, the handoff message tells the visitor when a person will reply and offers to
leave an email address (:func:`handoff_message`, called by the dialogue manager).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from botkit.config import BotConfig, BusinessHoursSettings
from botkit.errors import ConfigError

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _zone(settings: BusinessHoursSettings) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"business_hours.timezone: unknown time zone {settings.timezone!r}",
                          hint="use an IANA name such as Europe/Paris") from exc


def _ranges(settings: BusinessHoursSettings, day: date) -> list[tuple[time, time | None]]:
    if day.isoformat() in settings.holidays:
        return []
    out: list[tuple[time, time | None]] = []
    for item in settings.hours.get(_DAYS[day.weekday()], []):
        start, end = item.split("-")
        out.append((time.fromisoformat(start), None if end == "24:00" else time.fromisoformat(end)))
    return sorted(out, key=lambda r: r[0])


def next_opening(settings: BusinessHoursSettings, now: datetime | None = None) -> datetime | None:
    """When people answer next, in the business time zone: ``now`` itself when open, ``None``
    when no opening hours fall in the next two weeks."""
    zone = _zone(settings)
    local = (now or datetime.now(timezone.utc)).astimezone(zone)
    for offset in range(15):
        day = local.date() + timedelta(days=offset)
        for start, end in _ranges(settings, day):
            opens = datetime.combine(day, start, tzinfo=zone)
            closes = datetime.combine(day, end, tzinfo=zone) if end else datetime.combine(
                day + timedelta(days=1), time(0), tzinfo=zone)
            if local < closes:
                return max(opens, local)
    return None


def is_open(settings: BusinessHoursSettings, now: datetime | None = None) -> bool:
    """Whether people answer right now (always, when business hours are off)."""
    if not settings.enabled:
        return True
    at = (now or datetime.now(timezone.utc)).astimezone(_zone(settings))
    return next_opening(settings, at) == at


def handoff_message(config: BotConfig, now: datetime | None = None) -> str:
    """What the bot says when it hands a conversation to a person at ``now`` (default: now).

    ``escalation.message`` during business hours (or when they are off); outside them,
    ``business_hours.message`` with ``{next_open}`` filled in (``on Monday at 09:00 (UTC)``).
    """
    settings = config.business_hours
    at = now or datetime.now(timezone.utc)
    if is_open(settings, at):
        return config.escalation.message
    opening = next_opening(settings, at)
    if opening is None:
        when = "as soon as possible"
    else:
        local = at.astimezone(opening.tzinfo)
        day = ("today" if opening.date() == local.date() else "tomorrow"
               if opening.date() == local.date() + timedelta(days=1) else f"on {opening:%A}")
        when = f"{day} at {opening:%H:%M} ({settings.timezone})"
    return settings.message.replace("{next_open}", when)


__all__ = ["handoff_message", "is_open", "next_opening"]
