"""The connector's HTTP client for the runner: one place that classifies answers, retries and surfaces problems."""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any
from urllib.parse import quote

import requests

from webhooks.backoff import compute_backoff
from webhooks.classify import Verdict, classify_response

from .connection import Connection
from .errors import FatalError, RetriableError

__all__ = ["RunnerClient", "ENVIRONMENT_HEADER", "segment"]

log = logging.getLogger(__name__)

ENVIRONMENT_HEADER = "X-Runbook-Environment"
# Attempts of one request before a retriable failure is handed to the iPaaS.
DEFAULT_ATTEMPTS = 4
# First retry delay (seconds); doubles per attempt.
DEFAULT_BACKOFF_BASE = 0.5
# Longest delay between two attempts (seconds).
DEFAULT_BACKOFF_MAX = 8.0
# Seconds before one request is abandoned (a `wait` invocation adds its wait to this).
DEFAULT_TIMEOUT = 30.0


class RunnerClient:
    """Talk to one runner on behalf of one connection."""

    def __init__(self, connection: Connection, *, session: requests.Session | None = None, attempts: int = DEFAULT_ATTEMPTS,
                 backoff_base: float = DEFAULT_BACKOFF_BASE, backoff_max: float = DEFAULT_BACKOFF_MAX,
                 sleep: Any = time.sleep) -> None:
        self.connection = connection
        self.session = session or requests.Session()
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep

    def ws(self, path: str) -> str:
        """The URL of a workspace route."""
        return f"{self.connection.base_url}/api/v1/ws/{segment(self.connection.workspace)}{path}"

    def url(self, path: str) -> str:
        """The URL of a route outside any workspace."""
        return f"{self.connection.base_url}{path}"

    def request(self, method: str, url: str, *, json: Any = None, params: dict[str, Any] | None = None,
                idempotency_key: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, dict[str, Any]]:
        """Send a request, retrying 429, 5xx and connection failures with backoff; return (status, body)."""
        headers = {
            "Authorization": f"Bearer {self.connection.api_token}",
            ENVIRONMENT_HEADER: self.connection.environment,
            "Accept": "application/json",
        }
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        last: RetriableError | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                # Never follow a redirect: a POST followed to another URL would arrive as a GET, and nothing would be invoked.
                response = self.session.request(method, url, json=json, params=params, headers=headers, timeout=timeout,
                                                allow_redirects=False)
            except _UNSENDABLE as exc:
                # The request itself is wrong (a NaN in the body, a line break in a header, a URL that is no URL): sending it
                # again cannot help. A header's value is not repeated, as it may be the token.
                reason = "a header value is not valid" if isinstance(exc, requests.exceptions.InvalidHeader) else str(exc)
                raise FatalError(f"the request to the runner could not be sent ({exc.__class__.__name__}): {reason}") from None
            except requests.RequestException as exc:
                verdict = classify_response(None, error=f"{exc.__class__.__name__}: {exc}")
                last = RetriableError(f"could not reach the runner at {self.connection.base_url}: {verdict.reason}")
            else:
                if 300 <= response.status_code < 400:
                    raise FatalError(f"the runner at {self.connection.base_url} answered HTTP {response.status_code}, a redirect to "
                                     f"{response.headers.get('Location')!r}; set the connection's runner URL to where the runner "
                                     "answers itself", status=response.status_code)
                verdict = classify_response(response.status_code, response.headers)
                body = _json(response)
                if verdict.verdict is Verdict.SUCCESS:
                    if response.content and not body:
                        raise FatalError(f"the runner at {self.connection.base_url} answered HTTP {response.status_code} with a body "
                                         "that is not a JSON object; is the connection's runner URL a Runbook Manager runner?",
                                         status=response.status_code)
                    return response.status_code, body
                detail = str(body.get("detail") or response.reason or f"HTTP {response.status_code}")
                if verdict.verdict is not Verdict.RETRY:
                    raise FatalError(detail, status=response.status_code, problem=body)
                last = RetriableError(detail, status=response.status_code, problem=body)
            if attempt < self.attempts:
                delay = compute_backoff(attempt, base=self.backoff_base, max_delay=self.backoff_max, jitter=0.1)
                if verdict.retry_after is not None:
                    delay = max(delay, min(verdict.retry_after, self.backoff_max))
                log.info("runner answered %s; retrying in %.2fs", verdict.reason, delay)
                self.sleep(delay)
        assert last is not None
        raise last

    def new_idempotency_key(self) -> str:
        """A key for one logical invocation, reused by every retry of it."""
        return str(uuid.uuid4())


# Requests that fail before anything is sent, because of what they carry: never retried.
_UNSENDABLE = (requests.exceptions.InvalidJSONError, requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
               requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)


def segment(value: Any) -> str:
    """``value`` as one segment of a URL's path: a "/", "?" or "#" in it cannot reach another route."""
    return quote(str(value), safe="")


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {"items": body}
