"""Shipped jinja2 templates for drafts (text only; loaded with importlib.resources)."""
