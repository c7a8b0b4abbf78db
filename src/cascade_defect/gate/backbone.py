"""Frozen ResNet18 trunk (stem, layer1-3) with explicit weight sources and an ONNX Runtime path.

Weights come from exactly one of three places, chosen by the caller:

* ``imagenet`` - torchvision's ImageNet weights, downloaded on first use when online and found
  in torchvision's cache (``$TORCH_HOME/hub/checkpoints``) offline;
* a local file (a torchvision ResNet18 state dict, or a checkpoint holding one);
* ``random`` - He-initialised weights from an explicit seed (for tests and benchmarks).

When ``imagenet`` is asked for and cannot be had, `WeightsUnavailableError` lists the three
options; the gate never falls back to random weights on its own.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import ConfigError, WeightsUnavailableError
from ..settings import settings

IMAGENET_FILE = "resnet18-f37072fd.pth"
"""File name of torchvision's ResNet18 ImageNet weights in its hub cache."""

TRUNK_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")
"""State-dict keys the gate uses (layer4 and the classifier are dropped)."""

OPTIONS_HINT = (
    "offline, use --gate supervised (trained from scratch on this machine, no pretrained weights; the demo's "
    "choice); or, for this gate, one of: --backbone imagenet (needs network once, or the file "
    f"{IMAGENET_FILE} in $TORCH_HOME/hub/checkpoints), --backbone PATH (a local ResNet18 "
    "state dict), or --backbone random --seed N (random weights, for tests only)"
)


def _torch():
    import torch

    return torch


def imagenet_cache_path() -> Path:
    """Where torchvision keeps (or would keep) the ResNet18 ImageNet weights."""
    torch = _torch()
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE


def _trunk_only(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k.startswith(TRUNK_PREFIXES)}


def _load_state_file(path: Path) -> dict[str, Any]:
    torch = _torch()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsUnavailableError(f"{path}: backbone weights file not found; {OPTIONS_HINT}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise WeightsUnavailableError(f"{path}: not a readable PyTorch weights file ({exc})") from None
    for key in ("state_dict", "model", "backbone"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsUnavailableError(f"{path}: expected a state dict, found {type(obj).__name__}")
    obj = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in obj.items()}
    return obj


def _imagenet_state() -> dict[str, Any]:
    torch = _torch()
    cached = imagenet_cache_path()
    if cached.is_file():
        return _load_state_file(cached)
    if settings().offline:
        raise WeightsUnavailableError(
            f"ImageNet weights are not cached at {cached} and CASCADE_OFFLINE is set; {OPTIONS_HINT}"
        )
    from torchvision.models import ResNet18_Weights

    try:
        return torch.hub.load_state_dict_from_url(
            ResNet18_Weights.IMAGENET1K_V1.url, progress=False, check_hash=True
        )
    except Exception as exc:  # noqa: BLE001 - offline, proxy refusal, bad hash...
        raise WeightsUnavailableError(
            f"ImageNet weights could not be downloaded ({type(exc).__name__}: {exc}) and are not "
            f"cached at {cached}; {OPTIONS_HINT}"
        ) from None


def build_trunk(weights: str, seed: int | None = None):
    """A frozen, eval-mode ResNet18 (layer4/fc unused) with the chosen weights.

    `weights` is ``"imagenet"``, ``"random"`` (needs `seed`) or a path to a state-dict file.
    Returns ``(model, description)`` where description names the source for the bundle.
    """
    torch = _torch()
    from torchvision.models import resnet18

    if weights == "random":
        if seed is None:
            raise ConfigError("a random backbone needs an explicit seed (--seed N)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = resnet18(weights=None)
        source = f"random(seed={int(seed)})"
    else:
        if weights == "imagenet":
            state, source = _imagenet_state(), "imagenet"
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise WeightsUnavailableError(
                    f"backbone {weights!r} is neither 'imagenet', 'random' nor an existing file; "
                    f"{OPTIONS_HINT}"
                )
            state, source = _load_state_file(path), f"file:{path.name}"
        model = resnet18(weights=None)
        trunk = _trunk_only(state)
        missing = [k for k in _trunk_only(model.state_dict()) if k not in trunk]
        if missing:
            raise WeightsUnavailableError(
                f"{weights}: not ResNet18 weights (missing {len(missing)} keys, e.g. {missing[0]})"
            )
        try:
            model.load_state_dict(trunk, strict=False)
        except RuntimeError as exc:
            raise WeightsUnavailableError(f"{weights}: weights do not fit ResNet18: {exc}") from None
    model.layer4 = torch.nn.Identity()
    model.fc = torch.nn.Identity()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, source


def trunk_state_digest(model) -> str:
    """Short SHA-256 over the trunk's parameters and buffers (names the weights in a bundle)."""
    h = hashlib.sha256()
    for key, value in sorted(_trunk_only(model.state_dict()).items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
