"""Access: who may call the API (forces, admins), by token."""
