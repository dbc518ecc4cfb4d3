"""Model families of the zoo by the ``"model"`` name used in config files, built lazily from a config dict."""
from __future__ import annotations

import importlib

import torch.nn as nn

# config "model" name -> "module:builder"; each builder takes the whole config dict and returns an untrained model
BUILDERS: dict[str, str] = {
    "diffwave": "diffwave:build_diffwave",
    "sashimi": "sashimi:build_sashimi",
}


def build_model(config: dict) -> nn.Module:
    """Build the untrained model a config describes (``config['model']``, default ``'diffwave'``)."""
    name = config.get("model", "diffwave")
    try:
        target = BUILDERS[name]
    except KeyError:
        raise ValueError(f"config names an unknown model {name!r}; known: {sorted(BUILDERS)}") from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)(config)
