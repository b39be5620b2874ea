"""Accounts: registration, login with JWT access and refresh tokens, and the caller's profile."""
