"""Settings that size `serve`: API processes chosen from the CPUs unless given."""
from __future__ import annotations

import pytest

from runner.config import Settings
from runner.errors import ConfigError


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (2, 1), (4, 3), (None, 1)])
def test_api_processes_default_to_one_per_cpu_beyond_the_first(monkeypatch, cpus, expected):
    monkeypatch.setattr("runner.config.os.cpu_count", lambda: cpus)
    assert Settings.from_env({}).api_processes == expected


def test_web_workers_given_are_used_as_they_are(monkeypatch):
    monkeypatch.setattr("runner.config.os.cpu_count", lambda: 8)
    assert Settings.from_env({"RUNBOOK_MANAGER_WEB_WORKERS": "2"}).api_processes == 2


def test_negative_web_workers_are_refused_naming_the_value():
    with pytest.raises(ConfigError, match=r"RUNBOOK_MANAGER_WEB_WORKERS is -1"):
        Settings.from_env({"RUNBOOK_MANAGER_WEB_WORKERS": "-1"})
