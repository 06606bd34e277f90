"""Tracking: signed tokens for the links sent in emails (opens, clicks, unsubscribe, preferences, view online)."""
