"""Turning runner events and jobs into exactly the outputs the manifest declares."""
from __future__ import annotations

from typing import Any

__all__ = ["invoked_output", "stopped_output", "invocation_output", "job_output"]


def _lineage(job: dict[str, Any]) -> dict[str, Any]:
    return {"parent_job_uuid": job.get("parent_job_uuid"), "root_job_uuid": job.get("root_job_uuid"), "depth": job.get("depth", 0)}


def _runbook(runbook: dict[str, Any]) -> dict[str, Any]:
    return {"key": runbook.get("key"), "name": runbook.get("name"), "version": runbook.get("version")}


def invoked_output(data: dict[str, Any]) -> dict[str, Any]:
    """Runbook Action trigger: the parameters passed in, the job and its lineage."""
    return {
        "parameters": data.get("parameters", {}),
        "job": {"uuid": data["job"]["uuid"]},
        "runbook": _runbook(data["runbook"]),
        "lineage": _lineage(data["job"]),
        "triggered_by": data["job"].get("triggered_by"),
        "environment": data.get("environment"),
    }


def stopped_output(data: dict[str, Any]) -> dict[str, Any]:
    """Runbook Stopped by System trigger: why, when and where the system stopped a job."""
    step = data.get("step")
    return {
        "job": {"uuid": data["job"]["uuid"]},
        "message": data.get("message"),
        "stop_reason": data.get("stop_reason"),
        "stopped_at": data.get("stopped_at"),
        "runbook": _runbook(data["runbook"]),
        "step": {"order": step.get("order"), "title": step.get("title")} if step else None,
        "environment": data.get("environment"),
        "lineage": _lineage(data["job"]),
    }


def invocation_output(job: dict[str, Any], *, finished: bool) -> dict[str, Any]:
    """Runbook Action action: the job's UUID, and its final status and stop message when it was waited for."""
    return {
        "job": {"uuid": job["uuid"]},
        "status": job["status"],
        "finished": finished,
        "stop_reason": job.get("stop_reason"),
        "message": job.get("message"),
        "ended_by": job.get("ended_by"),
    }


def job_output(job: dict[str, Any]) -> dict[str, Any]:
    """Get Job: status, step timeline and stop message."""
    return {
        "job": {"uuid": job["uuid"]},
        "status": job["status"],
        "runbook": _runbook(job["runbook"]),
        "lineage": _lineage(job),
        "current_step": job.get("current_step"),
        "stop_reason": job.get("stop_reason"),
        "message": job.get("message"),
        "ended_by": job.get("ended_by"),
        "started_at": job.get("started_at"),
        "ended_at": job.get("ended_at"),
        "steps": [
            {"order": s["order"], "title": s["title"], "status": s["status"], "started_at": s.get("started_at"),
             "completed_at": s.get("completed_at"), "note": s.get("note"), "actor": s.get("actor")}
            for s in job.get("steps", [])
        ],
    }
