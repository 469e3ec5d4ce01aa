"""Records kept about everything else: data sealed at rest, retention, the audit log."""
