"""The release manifest: every downloadable asset of the zoo, as data, in one place.

Each entrypoint names one :class:`ReleaseAsset`. ``sha256`` is pinned where the hash is known (the project's own
releases carry its first hex digits in the file name, ``<name>-<sha256[:8]>.safetensors``); where it is unknown
(third-party releases such as RF5's), the downloader records the hash of the first download and refuses a later
file that differs (trust on first use).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

RF5_RELEASES = "https://github.com/RF5/DiffWave-unconditional/releases/download"


@dataclass(frozen=True)
class ReleaseAsset:
    """One release file.

    Attributes:
        url: where the default host serves it.
        file_name: the release file name; also its name in the cache and in a ``ZOO_MIRROR``.
        format: ``'rf5'`` (torch pickle ``{'model_state_dict': …}``), ``'zoo'`` (safetensors with the config in its
            metadata) or another loader-specific layout.
        sha256: the full hex digest, or ``None`` when unknown.
        licence, source: provenance shown to users.
        meta: free-form facts (parameter count, training steps, sample rate …).
    """

    url: str
    file_name: str
    format: str
    sha256: Optional[str] = None
    licence: str = "unknown"
    source: str = ""
    meta: dict = field(default_factory=dict)


MANIFEST: dict[str, ReleaseAsset] = {
    "diffwave_sc09": ReleaseAsset(
        url=f"{RF5_RELEASES}/v0.1/diffwave_sc09_1M_steps.pt",
        file_name="diffwave_sc09_1M_steps.pt",
        format="rf5",
        sha256=None,
        licence="unspecified by upstream (RF5/DiffWave-unconditional, philsyn/DiffWave-unconditional)",
        source="RF5/DiffWave-unconditional release v0.1 (philsyn 1M-step SC09 checkpoint)",
        meta={"parameters": 24_071_681, "steps": 1_000_000, "sample_rate": 16000, "dataset": "SC09"},
    ),
    **{
        f"sashimi_diffwave_{k}k_sc09": ReleaseAsset(
            url=f"{RF5_RELEASES}/v0.2/sashimi_sc09_{k}k_steps.pt",
            file_name=f"sashimi_sc09_{k}k_steps.pt",
            format="rf5",
            sha256=None,
            licence="unspecified by upstream (RF5/DiffWave-unconditional)",
            source=f"RF5/DiffWave-unconditional release v0.2, SaShiMi-DiffWave trained {k}k steps on SC09",
            meta={"parameters": 23_478_785, "steps": k * 1000, "sample_rate": 16000, "dataset": "SC09"},
        )
        for k in (500, 800)
    },
}


def get_asset(name: str) -> ReleaseAsset:
    """The manifest entry of entrypoint ``name``; a clear error for unknown names."""
    try:
        return MANIFEST[name]
    except KeyError:
        raise KeyError(f"no release asset named {name!r}; known: {sorted(MANIFEST)}") from None
