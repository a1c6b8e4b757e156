"""Projects, prompts and their settings (admin side)."""
