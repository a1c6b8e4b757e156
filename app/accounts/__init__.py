"""Accounts: users, logins, browser sessions with CSRF tokens, roles."""
