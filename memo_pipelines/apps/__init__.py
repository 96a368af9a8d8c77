"""What people run: the `memo` CLI, the OpenAI-compatible server, `memo status`, and where they find their settings."""
