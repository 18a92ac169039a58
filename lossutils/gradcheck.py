"""Placeholder until the module lands."""

__all__: list[str] = []
