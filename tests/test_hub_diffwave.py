"""``torch.hub.load(..., 'diffwave_sc09', source='local')`` on RF5-layout checkpoints served by a mirror."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from diffwave import WaveNet, sc09_config
from zoo.checkpoint import CheckpointError
from zoo.download import DownloadError
from zoo.release import make_release

from test_diffwave_model import TINY, upstream_forward

REPO = str(Path(__file__).resolve().parents[1])
RELEASE_NAME = "diffwave_sc09_1M_steps.pt"


def random_state(net, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def rf5_file(tmp_path_factory):
    """A full-size SC09 checkpoint in the RF5 layout: {'model_state_dict', 'optimizer_state_dict'}."""
    path = tmp_path_factory.mktemp("rf5") / RELEASE_NAME
    state = random_state(WaveNet(), seed=0)
    torch.save({"model_state_dict": state, "optimizer_state_dict": {"state": {}, "param_groups": []}}, path)
    return path


def hub_load(**kwargs):
    return torch.hub.load(REPO, "diffwave_sc09", source="local", progress=False, device="cpu", **kwargs)


def assert_loaded(model, path):
    expected = torch.load(path, weights_only=True)["model_state_dict"]
    own = model.backbone.state_dict()
    assert own.keys() == expected.keys()
    assert all(torch.equal(own[k], expected[k]) for k in own)
    assert not model.training and model.device == torch.device("cpu")


def test_loads_from_a_directory_mirror_and_matches_upstream_forward(rf5_file, monkeypatch):
    monkeypatch.setenv("ZOO_MIRROR", str(rf5_file.parent))
    model = hub_load()
    assert_loaded(model, rf5_file)
    assert (model.sample_rate, model.num_samples) == (16000, 16000)
    x = torch.randn(1, 1, 300, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([123])
    with torch.inference_mode():
        ours = model.denoiser(x, t)
    ref = upstream_forward(torch.load(rf5_file, weights_only=True)["model_state_dict"], WaveNet().config,
                           x.clone(), t)
    assert (ours - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_loads_over_http_and_second_load_hits_the_cache(rf5_file, http_server, monkeypatch):
    (http_server.root / RELEASE_NAME).write_bytes(rf5_file.read_bytes())
    monkeypatch.setenv("ZOO_MIRROR", http_server.url)
    assert_loaded(hub_load(), rf5_file)
    assert http_server.log == [(RELEASE_NAME, None)]
    assert_loaded(hub_load(), rf5_file)
    assert len(http_server.log) == 1, "the second load must not touch the network"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / RELEASE_NAME
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == hashlib.sha256(rf5_file.read_bytes()).hexdigest()


def test_truncated_file_names_the_file(rf5_file, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / RELEASE_NAME).write_bytes(rf5_file.read_bytes()[: 5_000_000])
    monkeypatch.setenv("ZOO_MIRROR", str(mirror))
    with pytest.raises(CheckpointError, match=rf"{RELEASE_NAME}.*truncated or corrupt"):
        hub_load()


def test_a_changed_release_file_is_refused_after_the_first_download(rf5_file, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / RELEASE_NAME).write_bytes(rf5_file.read_bytes())
    monkeypatch.setenv("ZOO_MIRROR", str(mirror))
    hub_load()
    cached = Path(torch.hub.get_dir()) / "checkpoints" / RELEASE_NAME
    data = bytearray(cached.read_bytes())
    data[-100] ^= 0xFF                                       # tamper with the cached copy
    cached.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="sha256"):
        hub_load()


def test_offline_with_an_empty_cache_says_which_file_and_where(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(DownloadError) as err:
        hub_load()
    msg = str(err.value)
    assert RELEASE_NAME in msg and str(Path(torch.hub.get_dir()) / "checkpoints") in msg


def test_pretrained_false_needs_no_network(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    model = hub_load(pretrained=False)
    assert sum(p.numel() for p in model.parameters()) == 24_071_681


def test_wrong_model_checkpoint_lists_the_mismatch(tmp_path):
    state = random_state(WaveNet(), seed=1)
    del state["final_conv.2.conv.bias"]
    state["residual_layer.fc_t1.weight"] = torch.zeros(3, 3)
    state["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save({"model_state_dict": state}, bad)
    with pytest.raises(CheckpointError) as err:
        hub_load(checkpoint=str(bad))
    msg = str(err.value)
    assert "bad.pt" in msg and "final_conv.2.conv.bias" in msg and "extra.weight" in msg
    assert "residual_layer.fc_t1.weight: checkpoint (3, 3) vs model (512, 128)" in msg


class NotATensor:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model_state_dict": {}, "payload": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="not unpickled for safety"):
        hub_load(checkpoint=str(path))


def test_release_asset_round_trip_builds_the_model_from_its_config(tmp_path):
    config = {**sc09_config(), "wavenet_config": TINY.to_dict()}
    net = WaveNet(TINY)
    ckpt = tmp_path / "100.pt"
    torch.save({"model_state_dict": {"backbone." + k: v for k, v in random_state(net, 2).items()},
                "optimizer_state_dict": {}, "step": 100, "config": config}, ckpt)
    weights, config_path, digest = make_release(ckpt, "diffwave_tiny", tmp_path / "dist")
    assert weights.name == f"diffwave_tiny-{digest[:8]}.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest
    assert config_path.exists()
    model = hub_load(checkpoint=str(weights))
    assert model.backbone.config == TINY
    expected = torch.load(ckpt, weights_only=True)["model_state_dict"]
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())


def test_entrypoint_docstring_has_an_example():
    import hubconf

    doc = hubconf.diffwave_sc09.__doc__
    assert "Example" in doc and "unconditional_generate" in doc and "torch.hub.load" in doc
