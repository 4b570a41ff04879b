"""Cron expressions: validated once with every error named, fire times computed as cron means them."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from cron_descriptor import get_description

from ..errors import FieldError, InvalidInput

__all__ = ["WallClockCronTrigger", "parse", "next_fire_times", "describe", "check"]

FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")


class WallClockCronTrigger(CronTrigger):
    """APScheduler's cron trigger, with classic cron's rule for the repeated hour when clocks go back.

    A schedule with fixed hours (``30 2 * * *``) fires once on a fall-back
    night, at the first 02:30; one with a wildcard hour (``*/30 * * * *``)
    fires for both occurrences of the repeated hour, since it means "every
    30 minutes" of real time. In a spring-forward gap a time that does not
    exist fires once, an hour later by the wall clock (02:30 → 03:30).
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        candidate = super().get_next_fire_time(previous_fire_time, now)
        if candidate is None or previous_fire_time is None or self._hour_is_wildcard():
            return candidate
        earlier = previous_fire_time.astimezone(self.timezone)
        if candidate.replace(tzinfo=None) == earlier.replace(tzinfo=None) and candidate.utcoffset() != earlier.utcoffset():
            return super().get_next_fire_time(candidate, candidate)
        return candidate

    def _hour_is_wildcard(self) -> bool:
        return str(self.fields[self.FIELD_NAMES.index("hour")]) == "*"


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def check(expression: str, timezone: str) -> list[FieldError]:
    """List what is wrong with a cron expression and time zone."""
    errors: list[FieldError] = []
    fields = expression.split()
    if len(fields) != 5:
        errors.append({"field": "cron", "message": f"a cron expression has 5 fields ({', '.join(FIELD_NAMES)}), got {len(fields)}",
                       "value": expression})
    else:
        try:
            CronTrigger.from_crontab(expression)
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
    minute, hour, day, month, day_of_week = expression.split()
    return WallClockCronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, timezone=_zone(timezone))


def next_fire_times(trigger: CronTrigger, now: datetime, count: int = 5) -> list[datetime]:
    """The next ``count`` fire times after ``now``."""
    times: list[datetime] = []
    previous = None
    moment = now
    while len(times) < count:
        upcoming = trigger.get_next_fire_time(previous, moment)
        if upcoming is None:
            break
        times.append(upcoming.astimezone(trigger.timezone))
        previous = moment = upcoming
    return times


def describe(expression: str) -> str:
    """Say in words what a cron expression means."""
    try:
        return get_description(expression)
    except Exception:  # noqa: BLE001 - the description is a courtesy; the expression was validated already
        return expression
