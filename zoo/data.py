"""Fixed-length audio clips for training: a folder of wavs, a CSV with a ``path`` column, or a ``.txt`` list."""
from __future__ import annotations

import csv
import os
from typing import Union

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .audio import load_audio

__all__ = ["AudioClipDataset", "list_audio_files"]

PathLike = Union[str, os.PathLike]
EXCLUDED = "_background_noise_"  # SC09/Speech Commands: long noise recordings, not speech clips


def _resolve(entry: str, base: str) -> str:
    entry = entry.strip()
    return entry if os.path.isabs(entry) else os.path.normpath(os.path.join(base, entry))


def list_audio_files(data_path: PathLike) -> list[str]:
    """The audio files ``data_path`` names (see :class:`AudioClipDataset`), in a fixed order."""
    data_path = os.fspath(data_path)
    if os.path.isdir(data_path):
        files = []
        for root, dirs, names in os.walk(data_path):
            dirs.sort()
            files += [os.path.join(root, n) for n in names if n.lower().endswith(".wav")]
        return sorted(f for f in files if EXCLUDED not in f)
    if not os.path.isfile(data_path):
        raise FileNotFoundError(f"data_path {data_path} does not exist (expected a folder, a .csv or a .txt list)")
    base = os.path.dirname(os.path.abspath(data_path))
    if data_path.lower().endswith(".csv"):
        with open(data_path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "path" not in [n.strip() for n in reader.fieldnames]:
                raise ValueError(f"CSV {data_path} has no 'path' column (columns: {reader.fieldnames})")
            rows = [{k.strip(): v for k, v in row.items() if k is not None} for row in reader]
        return [_resolve(r["path"], base) for r in rows if r.get("path") and r["path"].strip()]
    if data_path.lower().endswith(".txt"):
        with open(data_path) as f:
            lines = [ln.strip() for ln in f]
        return [_resolve(ln, base) for ln in lines if ln and not ln.startswith("#")]
    raise ValueError(f"data_path {data_path} is neither a folder, a .csv file nor a .txt list")


class AudioClipDataset(Dataset):
    """Mono clips of exactly ``segment_length`` samples at ``sampling_rate``; items are ``[1, segment_length]``.

    Args:
        data_path: a folder (all ``*.wav`` below it, recursively, except paths containing ``_background_noise_``
            as upstream SC09 does), a CSV file with a ``path`` column (RF5 layout ``path,label``) or a ``.txt``
            file with one path per line. Relative paths in a list are relative to the list's folder.
        segment_length: samples per item; shorter files are zero-padded at the end, longer ones cropped.
        sampling_rate: files at another rate are resampled.
        random_crop: crop long files at a random offset drawn from torch's global RNG (seed it, or seed the
            DataLoader workers, for reproducible crops); else keep the start.
    """

    def __init__(self, data_path: PathLike, segment_length: int, sampling_rate: int, random_crop: bool = True):
        self.data_path = os.fspath(data_path)
        self.segment_length = int(segment_length)
        self.sampling_rate = int(sampling_rate)
        self.random_crop = bool(random_crop)
        if self.segment_length < 1:
            raise ValueError(f"segment_length must be >= 1, got {segment_length}")
        self.files = list_audio_files(self.data_path)
        if not self.files:
            raise ValueError(f"no audio files found in data_path {self.data_path}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        wave, _ = load_audio(self.files[index], sample_rate=self.sampling_rate, mono=True)
        n, seg = wave.shape[0], self.segment_length
        if n < seg:
            wave = F.pad(wave, (0, seg - n))
        elif n > seg:
            start = int(torch.randint(0, n - seg + 1, ()).item()) if self.random_crop else 0
            wave = wave[start:start + seg]
        return wave.to(torch.float32).unsqueeze(0)

    def __repr__(self) -> str:
        return (f"AudioClipDataset({self.data_path!r}, {len(self)} files, segment_length={self.segment_length}, "
                f"sampling_rate={self.sampling_rate}, random_crop={self.random_crop})")
