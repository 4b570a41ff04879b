"""The gunicorn settings `serve` runs the API with."""
from __future__ import annotations

from gunicorn.config import Config
from gunicorn.http.message import _check_fast_parser

from runner.server import gunicorn_options


def _config() -> Config:
    config = Config()
    for key, value in gunicorn_options(host="127.0.0.1", port=8000, workers=1, threads=8).items():
        config.set(key, value)
    return config


def test_requests_are_parsed_by_the_c_parser():
    # gunicorn falls back to its slower pure-Python parser when gunicorn_h1c is missing (bench/README.md, finding 20).
    assert _check_fast_parser(_config()) is True


def test_the_workers_are_forked_from_a_preloaded_app_with_threads():
    config = _config()
    assert config.preload_app is True
    assert config.worker_class_str == "gthread"
    assert (config.workers, config.threads) == (1, 8)
