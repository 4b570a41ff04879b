"""The pure retry policies: backoff delays, what an HTTP answer means, and where the runner may send requests."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhooks.backoff import compute_backoff
from webhooks.classify import Verdict, classify_response
from webhooks.outbound import OutboundPolicy, OutboundRefused


def resolving(table: dict[str, list[str]]):
    """A fake DNS resolver answering from ``table`` (an unknown host fails like getaddrinfo does)."""
    calls: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append((host, port))
        if host not in table:
            raise OSError(f"Name or service not known: {host}")
        return table[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


# --- compute_backoff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "base", "factor", "expected"),
    [(1, 1.0, 2.0, 1.0), (2, 1.0, 2.0, 2.0), (3, 1.0, 2.0, 4.0), (4, 1.0, 2.0, 8.0), (3, 0.5, 3.0, 4.5), (5, 2.0, 1.0, 2.0)],
)
def test_backoff_grows_exponentially_with_the_attempt(attempt, base, factor, expected):
    assert compute_backoff(attempt, base=base, factor=factor, max_delay=1000.0, jitter=0) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", [7, 8, 20, 60])
def test_backoff_is_capped_at_max_delay(attempt):
    assert compute_backoff(attempt, base=1.0, factor=2.0, max_delay=60.0, jitter=0) == 60.0


@pytest.mark.parametrize(("attempt", "delay"), [(1, 10.0), (2, 20.0), (3, 40.0)])
def test_backoff_jitter_stays_within_its_fraction_of_the_delay(attempt, delay):
    seen = [compute_backoff(attempt, base=10.0, factor=2.0, max_delay=1000.0, jitter=0.25, rng=random.Random(seed))
            for seed in range(200)]

    assert all(delay * 0.75 <= d <= delay * 1.25 for d in seen), (min(seen), max(seen))
    assert len(set(seen)) > 100, "jitter should spread the delays"
    assert min(seen) < delay < max(seen)


def test_backoff_jitter_is_reproducible_with_a_seeded_random():
    first = [compute_backoff(2, base=3.0, max_delay=100.0, jitter=0.5, rng=random.Random(7)) for _ in range(3)]
    again = [compute_backoff(2, base=3.0, max_delay=100.0, jitter=0.5, rng=random.Random(7)) for _ in range(3)]

    assert first == again


def test_backoff_jitter_never_pushes_a_capped_delay_past_max_delay():
    seen = [compute_backoff(10, base=1.0, max_delay=30.0, jitter=0.5, rng=random.Random(seed)) for seed in range(200)]

    assert max(seen) <= 30.0
    assert min(seen) >= 15.0


@pytest.mark.parametrize("attempt", [0, -1, -10])
def test_backoff_refuses_an_attempt_below_one(attempt):
    with pytest.raises(ValueError, match=str(attempt)):
        compute_backoff(attempt, base=1.0, max_delay=10.0)


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    base=st.floats(min_value=0, max_value=3600, allow_nan=False),
    factor=st.floats(min_value=1, max_value=10, allow_nan=False),
    max_delay=st.floats(min_value=0, max_value=86_400, allow_nan=False),
    jitter=st.floats(min_value=0, max_value=1, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_is_never_negative_nor_above_max_delay(attempt, base, factor, max_delay, jitter, seed):
    delay = compute_backoff(attempt, base=base, factor=factor, max_delay=max_delay, jitter=jitter, rng=random.Random(seed))

    assert 0.0 <= delay <= max_delay


# --- classify_response ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "expected", "verdict", "reason", "retry_after"),
    [
        (200, {}, (), Verdict.SUCCESS, "HTTP 200", None),
        (201, {}, (), Verdict.SUCCESS, "HTTP 201", None),
        (204, {}, (), Verdict.SUCCESS, "HTTP 204", None),
        (299, {}, (), Verdict.SUCCESS, "HTTP 299", None),
        (201, {}, (201,), Verdict.SUCCESS, "HTTP 201", None),
        (404, {}, (404,), Verdict.SUCCESS, "HTTP 404", None),
        (200, {}, (201,), Verdict.GIVE_UP, "HTTP 200, expected 201", None),
        (204, {}, (201, 202), Verdict.GIVE_UP, "HTTP 204, expected 201, 202", None),
        (410, {}, (), Verdict.GONE, "HTTP 410 Gone", None),
        (429, {}, (), Verdict.RETRY, "HTTP 429", None),
        (429, {"Retry-After": "30"}, (), Verdict.RETRY, "HTTP 429", 30.0),
        (503, {"Retry-After": "7"}, (), Verdict.RETRY, "HTTP 503", 7.0),
        (503, {"retry-after": "7"}, (), Verdict.RETRY, "HTTP 503", 7.0),  # header names are case-insensitive
        (503, {"Retry-After": "soon"}, (), Verdict.RETRY, "HTTP 503", None),
        (500, {}, (), Verdict.RETRY, "HTTP 500", None),
        (502, {}, (), Verdict.RETRY, "HTTP 502", None),
        (504, {}, (), Verdict.RETRY, "HTTP 504", None),
        (500, {}, (201,), Verdict.RETRY, "HTTP 500", None),
        (404, {}, (), Verdict.GIVE_UP, "HTTP 404", None),
        (400, {}, (), Verdict.GIVE_UP, "HTTP 400", None),
        (401, {}, (), Verdict.GIVE_UP, "HTTP 401", None),
        (301, {}, (), Verdict.GIVE_UP, "HTTP 301", None),
    ],
)
def test_classify_response_table(status, headers, expected, verdict, reason, retry_after):
    result = classify_response(status, headers, expected=expected)

    assert (result.verdict, result.reason, result.retry_after) == (verdict, reason, retry_after)


def test_classify_reads_retry_after_given_as_an_http_date():
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=120)

    result = classify_response(503, {"Retry-After": format_datetime(when, usegmt=True)})

    assert result.verdict is Verdict.RETRY
    assert 110 <= result.retry_after <= 120


def test_classify_reads_a_past_http_date_as_retry_now():
    result = classify_response(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})

    assert (result.verdict, result.retry_after) == (Verdict.RETRY, 0.0)


@pytest.mark.parametrize("error", ["timed out after 0.5s", "ConnectionError: connection refused"])
def test_classify_retries_a_transport_error_and_names_it(error):
    result = classify_response(None, error=error)

    assert (result.verdict, result.reason) == (Verdict.RETRY, error)


# --- OutboundPolicy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address", "kind"),
    [
        ("localhost", "127.0.0.1", "loopback"),
        ("loop6.example", "::1", "loopback"),
        ("db.internal", "10.1.2.3", "private"),
        ("router.internal", "192.168.0.1", "private"),
        ("corp.internal", "172.16.5.4", "private"),
        ("metadata.example", "169.254.169.254", "link-local"),
        ("ll6.example", "fe80::1", "link-local"),
        ("ula.example", "fd00::7", "private"),
        ("any.example", "0.0.0.0", ""),
        ("mapped.example", "::ffff:127.0.0.1", "loopback"),
        ("mapped-meta.example", "::ffff:169.254.169.254", "link-local"),
        ("mapped-private.example", "::ffff:10.0.0.1", "private"),
    ],
)
def test_outbound_refuses_non_public_addresses_naming_host_and_address(host, address, kind):
    policy = OutboundPolicy.from_setting("", resolver=resolving({host: [address]}))

    with pytest.raises(OutboundRefused) as refused:
        policy.check(f"http://{host}/hook")

    message = str(refused.value)
    assert repr(host) in message and address in message
    assert f"a {kind} address" in message if kind else "address" in message
    assert "RUNBOOK_MANAGER_OUTBOUND_ALLOWLIST" in message


def test_outbound_refuses_a_host_when_any_of_its_addresses_is_private():
    policy = OutboundPolicy.from_setting("", resolver=resolving({"split.example": ["93.184.216.34", "10.0.0.9"]}))

    with pytest.raises(OutboundRefused, match="10.0.0.9"):
        policy.check("https://split.example/")


@pytest.mark.parametrize(
    ("url", "addresses"),
    [
        ("https://api.example.com/v1", ["93.184.216.34"]),
        ("http://api.example.com:8080/x", ["8.8.8.8"]),
        ("https://api.example.com/", ["2606:4700::6810:85e5"]),
        ("https://api.example.com/", ["::ffff:8.8.8.8"]),
    ],
)
def test_outbound_allows_public_addresses(url, addresses):
    policy = OutboundPolicy.from_setting("", resolver=resolving({"api.example.com": addresses}))

    assert policy.check(url) == addresses


def test_outbound_resolves_with_the_url_port_or_the_scheme_default():
    resolver = resolving({"api.example.com": ["93.184.216.34"]})
    policy = OutboundPolicy.from_setting("", resolver=resolver)

    for url in ("https://api.example.com/", "http://api.example.com/", "http://api.example.com:8080/"):
        policy.check(url)

    assert resolver.calls == [("api.example.com", 443), ("api.example.com", 80), ("api.example.com", 8080)]


@pytest.mark.parametrize(
    ("allowlist", "host", "address"),
    [
        ("db.internal", "db.internal", "10.1.2.3"),
        ("other.internal, DB.Internal", "db.internal", "10.1.2.3"),
        ("10.0.0.0/8", "db.internal", "10.1.2.3"),
        ("127.0.0.1", "localhost", "127.0.0.1"),
        ("169.254.169.254/32", "metadata.example", "169.254.169.254"),
        ("fd00::/8", "ula.example", "fd00::7"),
    ],
)
def test_outbound_allows_allow_listed_hosts_and_networks(allowlist, host, address):
    policy = OutboundPolicy.from_setting(allowlist, resolver=resolving({host: [address]}))

    assert policy.check(f"http://{host}/x") == [address]


def test_outbound_allow_listed_network_does_not_open_other_private_addresses():
    policy = OutboundPolicy.from_setting("10.0.0.0/8", resolver=resolving({"lan.example": ["192.168.1.1"]}))

    with pytest.raises(OutboundRefused, match="192.168.1.1"):
        policy.check("http://lan.example/")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://api.example.com/x", "gopher://api.example.com/", "javascript:alert(1)"])
def test_outbound_refuses_non_http_schemes_without_resolving(url):
    resolver = resolving({"api.example.com": ["93.184.216.34"]})
    policy = OutboundPolicy.from_setting("", resolver=resolver)

    with pytest.raises(OutboundRefused, match="only http and https"):
        policy.check(url)
    assert resolver.calls == []


@pytest.mark.parametrize(
    ("url", "fragment"),
    [("http:///nohost", "names no host"), ("http://api.example.com:99999/", "invalid port"), ("http://nowhere.example/", "cannot resolve")],
)
def test_outbound_refuses_urls_it_cannot_place(url, fragment):
    policy = OutboundPolicy.from_setting("", resolver=resolving({"api.example.com": ["93.184.216.34"]}))

    with pytest.raises(OutboundRefused, match=fragment):
        policy.check(url)


def test_outbound_refuses_a_host_name_that_cannot_be_encoded_for_lookup():
    # An empty label: the system resolver's IDNA encoding raises UnicodeError before any lookup.
    with pytest.raises(OutboundRefused, match="cannot resolve host 'a..example'"):
        OutboundPolicy.from_setting("").check("http://a..example/")
