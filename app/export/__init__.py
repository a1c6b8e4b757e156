"""Streamed NDJSON exports of the preference data: pairs (TRL format) and full rankings."""
