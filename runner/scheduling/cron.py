"""Cron expressions: validated once with every error named, fire times computed as cron means them."""
from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from cron_descriptor import get_description

from ..errors import FieldError, InvalidInput

__all__ = ["WallClockCronTrigger", "parse", "next_fire_times", "describe", "check"]

FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
# Classic cron numbers the days of the week from Sunday (0, and 7 again); APScheduler 3 numbers them from Monday.
CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class WallClockCronTrigger(CronTrigger):
    """APScheduler's cron trigger, with classic cron's rule for the repeated hour when clocks go back.

    A schedule with fixed hours (``30 2 * * *``) fires once on a fall-back
    night, at the first 02:30; one with a wildcard hour (``*/30 * * * *``)
    fires for both occurrences of the repeated hour, since it means "every
    30 minutes" of real time. In a spring-forward gap a time that does not
    exist fires once, an hour later by the wall clock (02:30 → 03:30).
    When both the day of month and the day of week are restricted, a day
    matching either one fires (``0 3 13 * 5``: the 13th, and every Friday).
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        """The next fire time after ``previous_fire_time`` (or from ``now``), by the rules above."""
        either = [t.get_next_fire_time(previous_fire_time, now) for t in self._either_day()]
        if either:
            return min((t for t in either if t is not None), default=None)
        candidate = super().get_next_fire_time(previous_fire_time, now)
        if candidate is None or previous_fire_time is None or self._hour_is_wildcard():
            return candidate
        earlier = previous_fire_time.astimezone(self.timezone)
        if candidate.replace(tzinfo=None) == earlier.replace(tzinfo=None) and candidate.utcoffset() != earlier.utcoffset():
            return super().get_next_fire_time(candidate, candidate)
        return candidate

    def _hour_is_wildcard(self) -> bool:
        return str(self.fields[self.FIELD_NAMES.index("hour")]).startswith("*")

    def _either_day(self) -> list[WallClockCronTrigger]:
        given = {f.name: str(f) for f in self.fields if not f.is_default}
        if given.get("day", "*") == "*" or given.get("day_of_week", "*") == "*":
            return []
        return [WallClockCronTrigger(**{**given, name: "*"}, timezone=self.timezone) for name in ("day", "day_of_week")]


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name that is a directory of the zone database ("America/")
        return None


def _weekday(token: str) -> int:
    if token.lower() in CRON_WEEKDAYS:
        return CRON_WEEKDAYS.index(token.lower())
    if token.isdigit() and int(token) <= 7:
        return int(token)
    raise ValueError(f"day of week {token!r} is not 0-7 (0 and 7 are Sunday) or sun-sat")


def _weekdays(field: str) -> str:
    """Spell a cron day-of-week field as APScheduler's day names, so that 1-5 means Monday to Friday."""
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        span, slash, step = part.partition("/")
        low, dash, high = span.partition("-")
        first = 0 if span == "*" else _weekday(low)
        last = 6 if span == "*" or (slash and not dash) else _weekday(high) if dash else first
        if slash and not (step.isdigit() and int(step) > 0):
            raise ValueError(f"day of week step {step!r} is not a positive number")
        if first > last:
            raise ValueError(f"day of week range {span!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, int(step) if slash else 1))
    return ",".join(CRON_WEEKDAYS[day] for day in sorted(days))


def _fields(expression: str) -> dict[str, str]:
    minute, hour, day, month, day_of_week = expression.split()
    return {"minute": minute, "hour": hour, "day": day, "month": month, "day_of_week": _weekdays(day_of_week)}


def check(expression: str, timezone: str) -> list[FieldError]:
    """List what is wrong with a cron expression and time zone."""
    errors: list[FieldError] = []
    fields = expression.split()
    if len(fields) != 5:
        errors.append({"field": "cron", "message": f"a cron expression has 5 fields ({', '.join(FIELD_NAMES)}), got {len(fields)}",
                       "value": expression})
    else:
        try:
            CronTrigger(**_fields(expression))
        except ValueError as exc:
            errors.append({"field": "cron", "message": str(exc), "value": expression})
    if _zone(timezone) is None:
        errors.append({"field": "timezone", "message": "unknown IANA time zone (e.g. Europe/Berlin, UTC)", "value": timezone})
    return errors


def parse(expression: str, timezone: str) -> WallClockCronTrigger:
    """Build the trigger of a valid expression, or raise InvalidInput naming every problem."""
    errors = check(expression, timezone)
    if errors:
        raise InvalidInput("; ".join(f"{e['field']} {e['value']!r}: {e['message']}" for e in errors), errors=errors)
    return WallClockCronTrigger(**_fields(expression), timezone=_zone(timezone))


def next_fire_times(trigger: CronTrigger, now: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` fire times after ``now``."""
    times: list[datetime] = []
    previous = None
    moment = now
    while len(times) < count:
        upcoming = trigger.get_next_fire_time(previous, moment)
        if upcoming is None:
            break
        # Via UTC, so a time in a spring-forward gap shows the zone's real offset (03:30+02:00, not 02:30+01:00).
        times.append(upcoming.astimezone(UTC).astimezone(trigger.timezone))
        previous = moment = upcoming
    return times


def describe(expression: str) -> str:
    """Say in words what a cron expression means."""
    try:
        return get_description(expression)
    except Exception:  # noqa: BLE001 - the description is a courtesy; the expression was validated already
        return expression
