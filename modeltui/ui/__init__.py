"""Textual user interface of modeltui."""
