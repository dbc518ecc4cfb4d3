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
    # DiffSinger mel decoders (MoonInTheRiver/DiffSinger, GitHub release tag "pretrain-model"): zips holding one
    # folder with config.yaml + model_ckpt_steps_<N>.ckpt; read by svs.diffsinger.release (entrypoint
    # diffsinger_decoder, keyword release=...). Hashes unknown: trust on first use.
    **{
        f"diffsinger_{name}": ReleaseAsset(
            url=f"https://github.com/MoonInTheRiver/DiffSinger/releases/download/pretrain-model/{name}.zip",
            file_name=f"{name}.zip",
            format="diffsinger-zip",
            sha256=None,
            licence=licence,
            source=f"MoonInTheRiver/DiffSinger release pretrain-model, {name}.zip ({about})",
            meta={"sample_rate": 24000, "hop_size": 128, "mel_bins": 80, "decoder_parameters": 15_086_416,
                  **meta},
        )
        for name, about, licence, meta in (
            ("0228_opencpop_ds100_rel", "Opencpop, MIDI end-to-end DiffSinger, gaussian start",
             "non-commercial: trained on Opencpop (CC BY-NC-ND 4.0 per third-party notes); code MIT",
             {"dataset": "Opencpop", "timesteps": 100, "K_step": 100, "max_beta": 0.06, "training_steps": 160_000}),
            ("popcs_ds_beta6_offline_pmf0_1230", "PopCS, the paper's shallow-diffusion model",
             "unspecified by upstream (code MIT; PopCS dataset terms apply)",
             {"dataset": "PopCS", "timesteps": 100, "K_step": 51, "max_beta": 0.06}),
            ("0831_opencpop_ds1000", "Opencpop, MIDI end-to-end, 1000 steps for PNDM",
             "non-commercial: trained on Opencpop (CC BY-NC-ND 4.0 per third-party notes); code MIT",
             {"dataset": "Opencpop", "timesteps": 1000, "K_step": 1000, "max_beta": 0.02, "pndm_speedup": 40}),
        )
    },
    # DiffSinger's singing vocoder (HifiGAN-Singing with NSF, 24 kHz / hop 128, ~70 h of singing): a zip holding a
    # folder with config.yaml + model_ckpt_steps_280000.ckpt (generator at state_dict['model_gen']); read by
    # svs.diffsinger.vocoder (entrypoint diffsinger_hifigan). Hash unknown: trust on first use.
    "diffsinger_hifigan": ReleaseAsset(
        url="https://github.com/MoonInTheRiver/DiffSinger/releases/download/pretrain-model/"
            "0109_hifigan_bigpopcs_hop128.zip",
        file_name="0109_hifigan_bigpopcs_hop128.zip",
        format="diffsinger-zip",
        sha256=None,
        licence="unspecified by upstream (code MIT; trained on PopCS and other singing data)",
        source="MoonInTheRiver/DiffSinger release pretrain-model, 0109_hifigan_bigpopcs_hop128.zip "
               "(HifiGAN-Singing with NSF)",
        meta={"sample_rate": 24000, "hop_size": 128, "mel_bins": 80, "training_steps": 280_000,
              "generator_parameters": 13_683_980, "nsf": True},
    ),
}


def get_asset(name: str) -> ReleaseAsset:
    """The manifest entry of entrypoint ``name``; a clear error for unknown names."""
    try:
        return MANIFEST[name]
    except KeyError:
        raise KeyError(f"no release asset named {name!r}; known: {sorted(MANIFEST)}") from None
