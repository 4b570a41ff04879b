"""The ceiling: a bare Flask app that parses JSON and commits one row per request, nothing else.

Served by the same gunicorn configuration as the runner, so every runner
figure can be read as a fraction of what this machine allows.
"""
from __future__ import annotations

import os
import sqlite3
import threading

from flask import Flask, jsonify, request

app = Flask(__name__)
_local = threading.local()
DATABASE = os.environ.get("CEILING_DATABASE", "/tmp/ceiling.db")
POSTGRES = os.environ.get("CEILING_POSTGRES_DSN")


def _connection():
    conn = getattr(_local, "conn", None)
    if conn is None:
        if POSTGRES:
            import psycopg

            conn = psycopg.connect(POSTGRES)
        else:
            conn = sqlite3.connect(DATABASE, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        _local.conn = conn
    return conn


@app.post("/ingest")
def ingest():
    """Commit the JSON body as one row."""
    payload = request.get_json()
    conn = _connection()
    if POSTGRES:
        with conn.transaction():
            conn.execute("INSERT INTO ceiling (body) VALUES (%s)", (str(payload),))
    else:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO ceiling (body) VALUES (?)", (str(payload),))
        conn.execute("COMMIT")
    return jsonify({"ok": True}), 202


def prepare() -> None:
    """Create the ceiling's one table."""
    if POSTGRES:
        import psycopg

        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS ceiling (id bigserial PRIMARY KEY, body text)")
    else:
        conn = sqlite3.connect(DATABASE)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS ceiling (id INTEGER PRIMARY KEY, body TEXT)")
        conn.commit()
        conn.close()
