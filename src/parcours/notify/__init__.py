"""Notifications: an outbox written with the trace, delivered by a worker to channels."""
