"""Alert rules, lifecycle and escalation, notification channels, silences."""
