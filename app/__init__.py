"""RankLoop web app, CLI and domain services."""
