"""Repository-level pytest configuration: the plugin tests drive inner sessions with pytester."""

from __future__ import annotations

pytest_plugins = ("pytester",)
