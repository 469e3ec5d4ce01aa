"""What admins watch."""
