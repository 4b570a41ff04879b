"""Cron schedules: parsing and describing expressions, the schedule API's use cases, and the scheduler."""
