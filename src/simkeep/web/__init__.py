"""The web: the holders' portal (/portal) and the staff console (/console), server-rendered with Jinja2.

Shared here: the page helpers (templating, the language, CSRF and the session cookie); the pages of each
audience live in :mod:`simkeep.web.portal` and :mod:`simkeep.web.console` and call the domains' services,
as the JSON API does.
"""
