"""hub.py: which weights a timm name means, the hub cache found without a network (in huggingface_hub's own layout),
the one clear error offline, `podium weights fetch`, and `podium list models --pretrained` marking what is cached."""

from __future__ import annotations

import subprocess

import pytest
from huggingface_hub import hf_hub_download, scan_cache_dir
from huggingface_hub.errors import LocalEntryNotFoundError
from typer.testing import CliRunner

import podium.hub
from podium.cli import app, list_lines
from podium.errors import PodiumError
from podium.hub import cached_file, fetch, hub_weights, listing, require_hub_weights
from tests.conftest import podium_cmd
from tests.hub_cache import REVISION, known_state, write_hub_weights

TAG = "test_resnet.r160_in1k"  # one of timm's tiny test networks (0.5 M parameters) with hub weights


def test_a_name_means_timms_weights_and_their_input():
    w = hub_weights("test_resnet")  # untagged: timm's default tag
    assert w == hub_weights(TAG) and w.name == TAG and w.repo == "timm/test_resnet.r160_in1k"
    assert w.files == ("model.safetensors", "pytorch_model.bin")  # timm's order: the safetensors first
    assert (w.input_size, w.interpolation, w.mean, w.std) == (160, "bilinear", (0.5,) * 3, (0.5,) * 3)
    imagenet = hub_weights("convnext_tiny.fb_in22k_ft_in1k")
    assert imagenet.mean == (0.485, 0.456, 0.406) and imagenet.interpolation == "bicubic"
    assert hub_weights("cspresnet50d") is None  # an architecture timm has no weights for
    with pytest.raises(PodiumError, match="has no pretrained weights"):
        require_hub_weights("cspresnet50d")
    with pytest.raises(PodiumError, match=r"no weights with that tag.*resnet18.a1_in1k"):
        hub_weights("resnet18.a1_in1kk")


def test_the_cache_is_huggingface_hubs_layout_and_is_read_without_a_network(hub_cache, monkeypatch):
    path = write_hub_weights(hub_cache, "timm/" + TAG, known_state("test_resnet"))
    repo = next(iter(scan_cache_dir(hub_cache).repos))  # huggingface_hub recognises the folder as its own
    assert repo.repo_id == "timm/" + TAG and [r.commit_hash for r in repo.revisions] == [REVISION]
    assert hf_hub_download("timm/" + TAG, "model.safetensors") == str(path)  # offline: served from the cache
    w = hub_weights(TAG)
    assert cached_file(w) == path
    monkeypatch.setattr(podium.hub.constants, "HF_HUB_OFFLINE", False)  # online: a cached file still needs no call

    def no_network(*args, **kwargs):
        raise AssertionError("podium went to the network for weights it has")

    monkeypatch.setattr(podium.hub, "hf_hub_download", no_network)
    assert fetch(w) == path


def test_offline_and_not_cached_is_one_error_naming_the_weights_the_cache_and_the_fix(hub_cache):
    with pytest.raises(PodiumError) as err:
        fetch(hub_weights("resnet18"))
    message = str(err.value)
    assert "'resnet18.a1_in1k'" in message and str(hub_cache / "models--timm--resnet18.a1_in1k") in message
    assert "HF_HUB_OFFLINE" in message and "podium weights fetch resnet18.a1_in1k" in message
    assert "HF_HUB_CACHE" in message and "copy the cache folder" in message


def test_a_failed_download_is_the_same_error_and_says_how_to_stay_offline(hub_cache, monkeypatch):
    monkeypatch.setattr(podium.hub.constants, "HF_HUB_OFFLINE", False)
    calls = []

    def unreachable(repo, file, **kwargs):
        calls.append((repo, file, kwargs["cache_dir"]))
        raise LocalEntryNotFoundError("cannot reach huggingface.co")

    monkeypatch.setattr(podium.hub, "hf_hub_download", unreachable)
    with pytest.raises(PodiumError, match=r"downloading them .* failed .*set HF_HUB_OFFLINE=1") as err:
        fetch(hub_weights(TAG), cache_dir=hub_cache / "elsewhere")
    assert calls == [("timm/" + TAG, "model.safetensors", hub_cache / "elsewhere")]
    assert f"podium weights fetch {TAG}" in str(err.value)


def test_podium_weights_fetch_finds_cached_weights_and_fails_clearly_offline(hub_cache):
    other = hub_cache.parent / "other-cache"
    path = write_hub_weights(other, "timm/" + TAG, known_state("test_resnet"))
    out = CliRunner().invoke(app, ["weights", "fetch", "test_resnet", "--cache-dir", str(other)])
    assert out.exit_code == 0 and "already cached" in out.output and str(path) in " ".join(out.output.split())
    # as a user runs it: exit 2, one message, no traceback (the environment: offline, an empty cache)
    proc = subprocess.run(podium_cmd("weights", "fetch", "resnet18.a1_in1k"), capture_output=True, text=True)
    text = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "resnet18.a1_in1k" in text and str(hub_cache) in text and "podium weights fetch" in text


def test_list_models_pretrained_marks_the_cached_weights(hub_cache):
    write_hub_weights(hub_cache, "timm/" + TAG, known_state("test_resnet"))
    lines = listing("test_")  # no match as a name: any part of it
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert TAG in rows and "cached" in rows[TAG].split() and "160 px" in rows[TAG]
    assert "test_vit.r160_in1k" in rows and "cached" not in rows["test_vit.r160_in1k"].split()
    assert lines[0].startswith("timm's pretrained weights matching '*test_*': ")
    assert ", 1 in the local cache" in lines[0]
    out = CliRunner().invoke(app, ["list", "models", "--pretrained", "test_resnet"])
    assert out.exit_code == 0 and out.output.splitlines() == list_lines("models", True, "test_resnet")
    assert [line.split()[0] for line in out.output.splitlines()[1:-1]] == [TAG]  # an architecture: its tags


def test_list_filter_and_pretrained_belong_to_models():
    with pytest.raises(PodiumError, match="podium list models --pretrained"):
        list_lines("losses", pretrained=True)
    with pytest.raises(PodiumError, match="podium list models --pretrained"):
        list_lines("models", pattern="convnext")
    assert "--pretrained" in "\n".join(list_lines(None))
