"""Keeping numbers alive: usage events, the daily sweep (reminders, recycling), undo, and the number pool."""
