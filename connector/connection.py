"""A connection: which environment, at which URL, with which token and workspace."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError
from .spec import load_manifest

__all__ = ["Connection"]


@dataclass(frozen=True)
class Connection:
    """What the connector needs to reach one runner: its environment, URL, token and workspace."""

    environment: str
    api_token: str
    workspace: str
    base_url: str

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> Connection:
        """Build a connection from the manifest's connection fields; the environment picks the default base URL."""
        environments = {e["id"]: e for e in load_manifest()["connection"]["environments"]}
        missing = [name for name in ("environment", "api_token", "workspace") if not fields.get(name)]
        if missing:
            raise ConfigurationError(f"the connection needs {', '.join(missing)}")
        not_text = [name for name in ("environment", "api_token", "workspace", "base_url") if not isinstance(fields.get(name) or "", str)]
        if not_text:
            raise ConfigurationError(f"the connection's {', '.join(not_text)} must be text")
        environment = fields["environment"]
        if environment not in environments:
            raise ConfigurationError(f"environment must be one of {', '.join(environments)}, got {environment!r}")
        base_url = (fields.get("base_url") or environments[environment]["default_base_url"]).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_url must be an http(s) URL, got {base_url!r}")
        return cls(environment=environment, api_token=fields["api_token"], workspace=fields["workspace"], base_url=base_url)

    @property
    def label(self) -> str:
        """The environment's label, e.g. EU Production."""
        environments = {e["id"]: e for e in load_manifest()["connection"]["environments"]}
        return environments[self.environment]["label"]
