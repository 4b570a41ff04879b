"""Cron schedules: parsing and describing expressions, the schedule API's use cases, and the scheduler."""

# Nothing is exported at package level: import the module you need.
__all__: list[str] = []
