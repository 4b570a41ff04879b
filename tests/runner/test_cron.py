"""Cron expressions: validation naming the bad field, and fire times as classic cron means them, across DST."""
from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone

import pytest

from runner.errors import InvalidInput
from runner.scheduling import cron

UTC = timezone.utc


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fire_times(expression: str, zone: str, now: datetime, count: int) -> list[str]:
    return [t.isoformat() for t in cron.next_fire_times(cron.parse(expression, zone), now, count)]


# --- daylight saving time in Europe/Berlin (2026-03-29 spring forward, 2026-10-25 fall back) ---------------


@pytest.mark.parametrize(("expression", "now", "expected"), [
    pytest.param("30 2 * * *", at(2026, 3, 28, 12, 0),
                 ["2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"],
                 id="fixed-time-in-the-spring-gap-fires-an-hour-later"),
    pytest.param("30 2 * * *", at(2026, 10, 24, 12, 0),
                 ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"],
                 id="fixed-time-in-the-repeated-hour-fires-once"),
    pytest.param("*/30 * * * *", at(2026, 10, 24, 23, 45),
                 ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00",
                  "2026-10-25T02:30:00+01:00", "2026-10-25T03:00:00+01:00"],
                 id="every-half-hour-fires-in-both-repeated-hours"),
    pytest.param("0 */1 * * *", at(2026, 10, 24, 23, 30),
                 ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"],
                 id="stepped-wildcard-hour-fires-in-both-repeated-hours"),
    pytest.param("0 3 * * *", at(2026, 3, 27, 12, 0),
                 ["2026-03-28T03:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T03:00:00+02:00"],
                 id="three-oclock-fires-once-a-day-around-spring-forward"),
])
def test_next_fire_times_across_dst(expression, now, expected):
    assert fire_times(expression, "Europe/Berlin", now, len(expected)) == expected


def test_every_half_hour_is_thirty_real_minutes_through_the_fall_back_night():
    times = [t.astimezone(UTC) for t in cron.next_fire_times(cron.parse("*/30 * * * *", "Europe/Berlin"), at(2026, 10, 24, 22, 59), 8)]

    assert [b - a for a, b in zip(times, times[1:])] == [timedelta(minutes=30)] * 7


def test_fixed_time_fires_once_on_each_dst_day():
    times = cron.next_fire_times(cron.parse("30 2 * * *", "Europe/Berlin"), at(2026, 3, 1, 0, 0), 240)

    per_day = {day: sum(1 for t in times if t.date().isoformat() == day) for day in ("2026-03-29", "2026-10-25")}
    assert per_day == {"2026-03-29": 1, "2026-10-25": 1}
    assert [t.astimezone(UTC) for t in times if t.date().isoformat() in per_day] == [at(2026, 3, 29, 1, 30), at(2026, 10, 25, 0, 30)]


def test_next_fire_times_are_strictly_increasing_in_the_schedules_zone():
    times = cron.next_fire_times(cron.parse("*/20 1-3 * * *", "Europe/Berlin"), at(2026, 10, 24, 12, 0), 30)

    assert all(a.astimezone(UTC) < b.astimezone(UTC) for a, b in zip(times, times[1:]))
    assert all(t.tzinfo == cron.parse("* * * * *", "Europe/Berlin").timezone for t in times)
    assert all(t.utcoffset() == t.astimezone(UTC).astimezone(t.tzinfo).utcoffset() for t in times)


def test_trigger_survives_pickling_into_the_job_store():
    trigger = pickle.loads(pickle.dumps(cron.parse("30 2 * * 1-5", "Europe/Berlin")))

    assert [t.isoformat() for t in cron.next_fire_times(trigger, at(2026, 3, 27, 12, 0), 2)] == [
        "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]


# --- days as cron numbers them ----------------------------------------------------------------------------


@pytest.mark.parametrize(("day_of_week", "expected"), [
    ("1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
    ("0", ["Sun"]),
    ("7", ["Sun"]),
    ("sun", ["Sun"]),
    ("MON,wed,fri", ["Mon", "Wed", "Fri"]),
    ("*/2", ["Sun", "Tue", "Thu", "Sat"]),
    ("1-5/2", ["Mon", "Wed", "Fri"]),
    ("5-7", ["Sun", "Fri", "Sat"]),
    ("6,0", ["Sun", "Sat"]),
    ("*", ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]),
])
def test_day_of_week_is_numbered_from_sunday(day_of_week, expected):
    week_from_sunday = at(2026, 3, 1, 0, 0)

    times = cron.next_fire_times(cron.parse(f"0 9 * * {day_of_week}", "UTC"), week_from_sunday, len(expected))

    assert [t.strftime("%a") for t in times] == expected
    assert times[-1] < week_from_sunday + timedelta(days=7)


def test_day_of_month_and_day_of_week_both_given_fire_on_either():
    times = fire_times("0 3 13 * 5", "UTC", at(2026, 3, 1, 0, 0), 4)

    assert times == ["2026-03-06T03:00:00+00:00", "2026-03-13T03:00:00+00:00", "2026-03-20T03:00:00+00:00",
                     "2026-03-27T03:00:00+00:00"]
    assert fire_times("0 3 1 * 1", "UTC", at(2026, 3, 25, 0, 0), 3) == [
        "2026-03-30T03:00:00+00:00", "2026-04-01T03:00:00+00:00", "2026-04-06T03:00:00+00:00"]


# --- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expression", "zone", "fields", "said"), [
    pytest.param("0 3 * *", "UTC", ["cron"], "got 4", id="four-fields"),
    pytest.param("0 0 3 * * *", "UTC", ["cron"], "got 6", id="six-fields"),
    pytest.param("61 3 * * *", "UTC", ["cron"], "61", id="minute-61"),
    pytest.param("0 24 * * *", "UTC", ["cron"], "24", id="hour-24"),
    pytest.param("0 3 32 * *", "UTC", ["cron"], "32", id="day-of-month-32"),
    pytest.param("0 3 * 13 *", "UTC", ["cron"], "13", id="month-13"),
    pytest.param("0 3 * * 8", "UTC", ["cron"], "'8'", id="day-of-week-8"),
    pytest.param("0 3 * * 5-1", "UTC", ["cron"], "5-1", id="day-of-week-range-backwards"),
    pytest.param("0 3 * * */0", "UTC", ["cron"], "'0'", id="day-of-week-step-0"),
    pytest.param("0 3 * * *", "Mars/Base", ["timezone"], "Mars/Base", id="unknown-time-zone"),
    pytest.param("0 3 * *", "Mars/Base", ["cron", "timezone"], "Mars/Base", id="both-wrong"),
])
def test_check_names_every_bad_field_and_value(expression, zone, fields, said):
    errors = cron.check(expression, zone)

    assert [e["field"] for e in errors] == fields
    assert [e["value"] for e in errors] == [expression if f == "cron" else zone for f in fields]
    assert any(said in e["message"] or said == e["value"] for e in errors)


def test_parse_refuses_a_bad_expression_listing_every_error():
    with pytest.raises(InvalidInput) as refused:
        cron.parse("61 24 * * *", "Mars/Base")

    assert [e["field"] for e in refused.value.errors] == ["cron", "timezone"]


@pytest.mark.parametrize(("expression", "words"), [
    ("15 9 * * 1-5", "At 09:15 AM, Monday through Friday"),
    ("*/30 * * * *", "Every 30 minutes"),
    ("30 2 * * 0", "At 02:30 AM, only on Sunday"),
])
def test_description_says_what_the_expression_fires(expression, words):
    assert cron.describe(expression) == words
