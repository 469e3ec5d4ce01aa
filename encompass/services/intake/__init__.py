"""Intake: a force's report (HTTP or AMQP) stored and queued, and its withdrawal."""
