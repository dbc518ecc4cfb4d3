"""Dataclass configs read from and written to the JSON sections of a config file."""
from __future__ import annotations

from dataclasses import asdict, fields


class ConfigSection:
    """Mixin for a ``@dataclass`` holding one section of a config file (e.g. ``wavenet_config``).

    ``SECTION`` names the section in error messages.
    """

    SECTION = "config"

    @classmethod
    def from_dict(cls, d: dict):
        """Build from a dict; unknown keys are an error naming them (a typo must not be silently ignored)."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.SECTION} fields: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)
