"""Signing, verifying, classifying and retrying webhooks.

The modules imported here are pure (no runner imports), so the connector and
the runner share them; the delivery worker lives in ``webhooks.delivery``.
"""
from .backoff import compute_backoff
from .classify import Classification, Verdict, classify_response
from .outbound import OutboundPolicy, OutboundRefused
from .signing import VerificationError, generate_secret, sign, signed_headers, verify

__all__ = [
    "compute_backoff",
    "classify_response",
    "Classification",
    "Verdict",
    "OutboundPolicy",
    "OutboundRefused",
    "generate_secret",
    "sign",
    "signed_headers",
    "verify",
    "VerificationError",
]
