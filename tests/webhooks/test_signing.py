"""Standard Webhooks signing as pure functions, cross-checked against the ``standardwebhooks`` reference library."""
from __future__ import annotations

import base64
import secrets
from datetime import datetime, timezone

import pytest
from standardwebhooks import Webhook

from webhooks.signing import SECRET_PREFIX, VerificationError, generate_secret, sign, signed_headers, verify

NOW = 1_760_000_000
BODY = b'{"type":"job.succeeded","data":{"job":{"uuid":"abc"}}}'


@pytest.fixture
def secret() -> str:
    return generate_secret()


def headers_for(secret: str, body: bytes = BODY, *, msg_id: str = "msg_1", timestamp: int = NOW) -> dict[str, str]:
    return signed_headers(secret, msg_id, body, timestamp=timestamp)


def test_generated_secret_is_whsec_and_base64(secret):
    assert secret.startswith(SECRET_PREFIX)
    assert len(base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)) >= 24
    assert generate_secret() != secret


def test_signed_message_verifies_and_returns_its_id(secret):
    assert verify(secret, headers_for(secret, msg_id="msg_42"), BODY, now=NOW) == "msg_42"


def test_header_names_are_matched_without_regard_to_case(secret):
    shouted = {k.upper(): v for k, v in headers_for(secret).items()}

    assert verify(secret, shouted, BODY, now=NOW) == "msg_1"


def test_signed_headers_default_to_the_current_time(secret):
    headers = signed_headers(secret, "msg_1", BODY)

    assert verify(secret, headers, BODY) == "msg_1"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(secret, missing):
    headers = {k: v for k, v in headers_for(secret).items() if k != missing}

    with pytest.raises(VerificationError, match="not signed"):
        verify(secret, headers, BODY, now=NOW)


@pytest.mark.parametrize("stamp", ["yesterday", "1.7e9", "", "17600000OO", "9" * 4000])
def test_malformed_timestamp_is_rejected(secret, stamp):
    headers = {**headers_for(secret), "webhook-timestamp": stamp}

    with pytest.raises(VerificationError):
        verify(secret, headers, BODY, now=NOW)


@pytest.mark.parametrize(("signed_at", "tolerance"), [(NOW - 301, 300), (NOW + 301, 300), (NOW - 11, 10)],
                         ids=["too-old", "too-new", "narrow-tolerance"])
def test_timestamp_outside_the_tolerance_is_rejected(secret, signed_at, tolerance):
    with pytest.raises(VerificationError, match="away from now"):
        verify(secret, headers_for(secret, timestamp=signed_at), BODY, tolerance=tolerance, now=NOW)


@pytest.mark.parametrize("signed_at", [NOW - 300, NOW + 300])
def test_timestamp_at_the_edge_of_the_tolerance_is_accepted(secret, signed_at):
    assert verify(secret, headers_for(secret, timestamp=signed_at), BODY, now=NOW) == "msg_1"


@pytest.mark.parametrize("tampered", [BODY + b" ", BODY.replace(b"abc", b"abd"), b""], ids=["appended", "changed", "emptied"])
def test_tampered_body_is_rejected(secret, tampered):
    with pytest.raises(VerificationError, match="does not match"):
        verify(secret, headers_for(secret), tampered, now=NOW)


@pytest.mark.parametrize("field", ["webhook-id", "webhook-timestamp"])
def test_changed_id_or_timestamp_is_rejected(secret, field):
    headers = headers_for(secret)
    headers[field] = {"webhook-id": "msg_2", "webhook-timestamp": str(NOW + 1)}[field]

    with pytest.raises(VerificationError, match="does not match"):
        verify(secret, headers, BODY, now=NOW)


def test_wrong_secret_is_rejected(secret):
    with pytest.raises(VerificationError, match="does not match"):
        verify(generate_secret(), headers_for(secret), BODY, now=NOW)


@pytest.mark.parametrize("position", ["first", "last"])
def test_any_of_several_signatures_is_accepted_during_key_rotation(secret, position):
    old = generate_secret()
    current = headers_for(secret)["webhook-signature"]
    stale = sign(old, "msg_1", NOW, BODY)
    entries = [current, stale] if position == "first" else [stale, current]

    headers = {**headers_for(secret), "webhook-signature": " ".join(entries)}

    assert verify(secret, headers, BODY, now=NOW) == "msg_1"
    assert verify(old, headers, BODY, now=NOW) == "msg_1"


@pytest.mark.parametrize("entry", ["v2,{sig}", "{sig}", "v1a,{sig}", "v1,", "v1,{sig}\u00e9"])
def test_signature_with_another_version_or_no_version_is_rejected(secret, entry):
    value = sign(secret, "msg_1", NOW, BODY).split(",", 1)[1]
    headers = {**headers_for(secret), "webhook-signature": entry.format(sig=value)}

    with pytest.raises(VerificationError):
        verify(secret, headers, BODY, now=NOW)


def test_secret_that_is_not_base64_is_refused():
    with pytest.raises(ValueError, match="base64"):
        sign("whsec_not base64!", "msg_1", NOW, BODY)


# --- the reference implementation agrees -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_bytes", [16, 24, 32, 64])
def test_signature_of_the_reference_library_verifies(key_bytes):
    secret = SECRET_PREFIX + base64.b64encode(secrets.token_bytes(key_bytes)).decode()
    at = datetime.fromtimestamp(NOW, tz=timezone.utc)
    signature = Webhook(secret).sign("msg_ref", at, BODY.decode())

    headers = {"webhook-id": "msg_ref", "webhook-timestamp": str(NOW), "webhook-signature": signature}

    assert verify(secret, headers, BODY, now=NOW) == "msg_ref"


def test_our_signature_equals_the_reference_librarys(secret):
    at = datetime.fromtimestamp(NOW, tz=timezone.utc)

    assert sign(secret, "msg_1", NOW, BODY) == Webhook(secret).sign("msg_1", at, BODY.decode())


def test_our_signed_headers_verify_with_the_reference_library(secret):
    headers = signed_headers(secret, "msg_1", BODY)

    assert Webhook(secret).verify(BODY, headers) == {"type": "job.succeeded", "data": {"job": {"uuid": "abc"}}}
