"""Runner settings: defaults, then ``RUNBOOK_MANAGER_*`` environment variables, then overrides."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

ENV_PREFIX = "RUNBOOK_MANAGER_"


def _setting(default: Any, doc: str) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every knob of the runner; each field maps to ``RUNBOOK_MANAGER_<NAME>``."""

    database_url: str = _setting(
        "sqlite:///var/runbook-manager.db",
        "SQLAlchemy URL of the store: SQLite (WAL) embedded, or `postgresql+psycopg://…` for scale-out.",
    )
    environment: str = _setting("eu-qa", "Id of the environment this runner serves.")
    environments: str = _setting(
        "eu-production=EU Production,eu-qa=EU QA",
        "Known environments as `id=Label` pairs, comma-separated.",
    )
    require_environment_header: bool = _setting(
        False, "Refuse API requests that carry no `X-Runbook-Environment` header."
    )
    max_body_bytes: int = _setting(1_048_576, "Largest accepted request body; larger bodies get 413.")
    public_url: str = _setting("", "Base URL clients reach this runner at (used in inbound webhook URLs); defaults to the request's host.")
    outbound_allowlist: str = _setting(
        "",
        "Hosts or CIDRs that http steps and webhook targets may reach even though they are private, loopback or link-local.",
    )
    max_call_depth: int = _setting(5, "Deepest allowed chain of runbooks calling runbooks.")
    approval_environments: str = _setting(
        "eu-production",
        "Environments where every `is_destructive` step needs an approval, comma-separated.",
    )
    overdue_factor: float = _setting(1.5, "A step running longer than `est_minutes` × this factor emits `job.step_overdue`.")
    lease_seconds: float = _setting(30.0, "How long a worker owns a claimed job or delivery before another may take it over.")
    poll_interval: float = _setting(
        0.2, "Seconds an idle worker waits before looking for work again (`serve`'s own API workers also wake its background "
             "process the moment they commit work for it).",
    )
    worker_threads: int = _setting(4, "Job-executing threads per worker process.")
    delivery_threads: int = _setting(4, "Webhook-delivering threads per worker process.")
    web_workers: int = _setting(
        0, "gunicorn worker processes started by `serve`; 0 picks one per CPU beyond the first (which the background "
           "process of `serve` needs), at least one.",
    )
    web_threads: int = _setting(8, "Threads per gunicorn worker process.")
    http_timeout: float = _setting(10.0, "Default timeout (seconds) of an http step attempt.")
    delivery_timeout: float = _setting(10.0, "Timeout (seconds) of one webhook delivery attempt.")
    delivery_max_attempts: int = _setting(8, "Attempts before a delivery is given up.")
    delivery_backoff_base: float = _setting(2.0, "First retry delay (seconds) of webhook deliveries; doubles per attempt.")
    delivery_backoff_max: float = _setting(3600.0, "Longest delay (seconds) between two delivery attempts.")
    subscription_failure_limit: int = _setting(
        3, "Deliveries given up in a row before a subscription is disabled."
    )
    webhook_tolerance_seconds: int = _setting(300, "Accepted clock skew of signed inbound webhooks.")
    token_cache_seconds: float = _setting(5.0, "How long a verified API token is trusted before it is checked again.")
    log_level: str = _setting("INFO", "Python logging level.")
    demo_workspace: str = _setting("demo", "Workspace slug that `serve --demo` creates and fills.")
    var_dir: str = _setting("var", "Directory for local state: the demo token and the metrics of `serve`'s processes.")
    console_secret_key: str = _setting(
        "",
        "Key that signs the operator console's session cookie; empty means one generated once and kept in "
        "`<var_dir>/console-secret-key`, so every process of the runner shares it.",
    )
    console_secure_cookies: bool = _setting(
        False, "Mark the console's session cookie `Secure`; set it to true when the runner is reached over HTTPS."
    )
    scheduler_misfire_grace_seconds: int = _setting(
        3600, "A cron tick missed by up to this many seconds still fires (once, coalesced)."
    )
    scheduler_leader_lock: int = _setting(7_311_001, "PostgreSQL advisory lock id that elects the single scheduler.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from defaults, then the environment, then keyword overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _coerce(f.name, f.type, raw)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse settings the runner cannot work with."""
        known = self.environment_labels
        if self.environment not in known:
            raise ConfigError(
                f"RUNBOOK_MANAGER_ENVIRONMENT is {self.environment!r}, which is not one of "
                f"RUNBOOK_MANAGER_ENVIRONMENTS ({', '.join(known)})"
            )
        if self.web_workers < 0:
            raise ConfigError(f"RUNBOOK_MANAGER_WEB_WORKERS is {self.web_workers}; use 0 (one per CPU beyond the first) or more")
        for env_id in self.approval_environment_ids:
            if env_id not in known:
                raise ConfigError(
                    f"RUNBOOK_MANAGER_APPROVAL_ENVIRONMENTS names {env_id!r}, which is not a known environment"
                )

    @property
    def environment_labels(self) -> dict[str, str]:
        """Map each known environment id to its label."""
        labels: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in self.environments.split(","))):
            env_id, _, label = item.partition("=")
            labels[env_id.strip()] = (label or env_id).strip()
        return labels

    @property
    def environment_label(self) -> str:
        """Label of the environment this runner serves."""
        return self.environment_labels[self.environment]

    @property
    def approval_environment_ids(self) -> list[str]:
        """Environments whose destructive steps need approval."""
        return [e.strip() for e in self.approval_environments.split(",") if e.strip()]

    @property
    def api_processes(self) -> int:
        """How many API processes `serve` starts: RUNBOOK_MANAGER_WEB_WORKERS, or one per CPU beyond the first when it is 0."""
        return self.web_workers or max(1, (os.cpu_count() or 1) - 1)

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is an embedded SQLite file."""
        return self.database_url.startswith("sqlite")

    @classmethod
    def documented(cls) -> list[tuple[str, Any, str]]:
        """List ``(variable, default, description)`` for every setting."""
        rows = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((ENV_PREFIX + f.name.upper(), default, f.metadata["doc"]))
        return rows


def _coerce(name: str, type_name: Any, raw: str) -> Any:
    var = ENV_PREFIX + name.upper()
    try:
        if type_name in ("bool", bool):
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if type_name in ("int", int):
            return int(raw)
        if type_name in ("float", float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{var} must be a {type_name}, got {raw!r}") from None
    return raw
