"""Admin pages: users, projects, prompt and sample imports, progress."""
