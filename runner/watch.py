"""Following a job from a terminal: drive it when it is due, print each event as a line."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from webhooks.outbound import OutboundPolicy

from .auth import Actor
from .engine import control
from .engine.driver import drive
from .engine.worker import new_worker_id
from .runtime import Runtime

__all__ = ["watch_job", "describe_event"]

# Seconds between two looks at a watched job.
DEFAULT_WATCH_INTERVAL = 0.25


def describe_event(event: dict[str, Any]) -> str | None:
    """Say in one line what an event means to someone watching the job, or None for bookkeeping events."""
    data, kind = event["data"], event["type"]
    step = data.get("step") or {}
    where = f"step {step.get('order')} ({step.get('title')})" if step else ""
    if kind == "job.started":
        return f"started {data['runbook']['key']} v{data['runbook']['version']} in {data['environment']}"
    if kind == "step.started":
        return f"{where}: started"
    if kind == "step.completed":
        output = step.get("output") or {}
        detail = f" — HTTP {output['status']}" if output.get("status") else ""
        if output.get("child_job_uuid"):
            detail = f" — child job {output['child_job_uuid']}"
        note = f" — {step['note']}" if step.get("note") else ""
        return f"{where}: {step.get('status')}{detail}{note}"
    if kind == "step.retrying":
        return f"{where}: attempt {data.get('attempt')} got {data.get('reason')}; retrying in {data.get('retry_in_seconds', 0)}s"
    if kind == "job.waiting":
        return f"{where}: waiting for {data.get('waiting_for')}"
    if kind == "step.approved":
        return f"{where}: approved by {data.get('approved_by')}"
    if kind == "job.step_overdue":
        return f"{where}: overdue (estimated {data.get('est_minutes')} min, running {data.get('running_minutes')} min)"
    if kind in ("job.paused", "job.resumed"):
        return kind.split(".")[1]
    if kind == "job.stopped_by_system":
        return f"stopped by the system ({data.get('stop_reason')}): {data.get('message')}"
    if kind in ("job.succeeded", "job.failed", "job.cancelled"):
        message = f": {data['message']}" if data.get("message") else ""
        return f"{kind.split('.')[1]}{message}"
    return None


def watch_job(rt: Runtime, actor: Actor, job_uuid: str, *, timeout: float | None, echo: Callable[[str], None],
              interval: float = DEFAULT_WATCH_INTERVAL) -> str:
    """Follow a job until it ends or ``timeout`` passes; return its last status."""
    policy = OutboundPolicy.from_setting(rt.settings.outbound_allowlist)
    worker_id = new_worker_id("cli")
    give_up = None if timeout is None else time.monotonic() + timeout
    after = 0
    while True:
        drive(rt, job_uuid, worker_id, policy=policy)
        page = control.job_events(rt, actor, job_uuid, after=after, limit=500)
        for event in page["items"]:
            line = describe_event(event)
            if line:
                echo(line)
        after = page["next_after"]
        status = control.get_job(rt, actor, job_uuid)["status"]
        if status in ("succeeded", "failed", "stopped", "cancelled"):
            return status
        if give_up is not None and time.monotonic() >= give_up:
            echo(f"still {status} after {timeout:g}s; stopped watching (the job goes on)")
            return status
        time.sleep(interval)
