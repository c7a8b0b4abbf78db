"""Keep Ultralytics fully offline. Import this module before anything imports `ultralytics`.

Importing it sets the environment Ultralytics reads at its own import time:

- ``YOLO_OFFLINE=1``: its "am I online?" DNS probe at import is skipped and reports offline;
- ``YOLO_AUTOINSTALL=false``: a missing optional package is reported, never ``pip install``-ed.

`load_ultralytics()` then imports Ultralytics and closes the remaining network paths, each
of which would otherwise be tried (and wait for a timeout) on a machine without internet:

- settings sync and every logger integration are switched off in memory (the user's
  settings file is not rewritten), and usage events are disabled;
- the Ultralytics platform callbacks (model upload when an API key is configured) are removed;
- ``check_font`` (called by every dataset check and plot: Arial.ttf) only looks locally;
- asset downloads (``yolov8n.pt``, ``yolo26n.pt`` for the AMP check, ...) are refused with
  `WeightsUnavailableError` instead of a download attempt;
- ``check_amp`` never downloads a reference model: AMP is off on CPU/MPS, on CUDA it is
  allowed except on the GPUs Ultralytics itself lists as broken.

Every patch is idempotent. `network_attempts_blocked()` is a context manager tests use to
prove that no non-loopback connection is attempted.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import socket
import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError, WeightsUnavailableError

_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}
for _key, _value in _ENV.items():
    os.environ[_key] = _value

log = logging.getLogger(__name__)

_PATCHED = False
_IMPORTED_EARLY = "ultralytics" in sys.modules
"""True when something imported Ultralytics before this module (its import-time probe ran)."""

_BAD_AMP_GPUS = re.compile(
    r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", re.IGNORECASE
)


def _local_font(font: str = "Arial.ttf") -> Path | None:
    """Ultralytics' `check_font` without the download: a local copy or None (PIL's default font)."""
    from ultralytics.utils import USER_CONFIG_DIR

    name = Path(font).name
    if Path(font).is_file():
        return Path(font)
    candidate = USER_CONFIG_DIR / name
    if candidate.is_file():
        return candidate
    try:
        from matplotlib import font_manager

        for entry in font_manager.fontManager.ttflist:
            if name in entry.fname and os.path.exists(entry.fname):
                return Path(entry.fname)
    except Exception:  # matplotlib missing or broken: fall back to PIL's default font
        pass
    return None


def _no_download_asset(file: str | Path, *args: Any, **kwargs: Any) -> str:
    """Ultralytics' `attempt_download_asset` restricted to files that already exist locally."""
    from ultralytics.utils import SETTINGS

    path = Path(str(file).strip().replace("'", ""))
    if path.exists():
        return str(path)
    in_weights_dir = Path(SETTINGS["weights_dir"]) / path
    if in_weights_dir.exists():
        return str(in_weights_dir)
    raise WeightsUnavailableError(
        f"{file}: weights file not found locally and cascade-defect never downloads weights "
        "(offline mode). Pass the path of a local checkpoint, or train from 'yolov8n.yaml' "
        "(random initialisation)."
    )


def _no_dataset_download(url: Any = None, *args: Any, **kwargs: Any) -> None:
    """Ultralytics' dataset `download`/`safe_download`: refused (datasets are read in place)."""
    raise DataError(str(url or kwargs.get("url", "?")),
                    "dataset download refused: cascade-defect runs offline; give a local dataset")


def _offline_check_amp(model: Any) -> bool:
    """AMP decision without the reference-model download: off on CPU/MPS and on known-bad GPUs."""
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    name = torch.cuda.get_device_name(device)
    if _BAD_AMP_GPUS.search(name):
        log.warning("AMP disabled on %s (listed by Ultralytics as unreliable with AMP)", name)
        return False
    return True


def _read_results_csv(self: Any) -> dict:
    """`BaseTrainer.read_results_csv` without polars: {column: [values]}."""
    import csv

    try:
        with open(self.csv, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError:
        return {}
    out: dict[str, list] = {}
    for row in rows:
        for key, value in row.items():
            try:
                out.setdefault(key.strip(), []).append(float(value))
            except (TypeError, ValueError):
                out.setdefault(key.strip(), []).append(value)
    return out


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send whatever Ultralytics prints (progress bars, summaries) to stderr, keeping stdout clean."""
    with redirect_stdout(sys.stderr):
        yield


def _disable_settings_sync() -> None:
    from ultralytics.utils import SETTINGS

    for key in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb"):
        if key in SETTINGS:
            dict.__setitem__(SETTINGS, key, False)  # in memory only: the user's file stays as it is


def load_ultralytics() -> Any:
    """Import Ultralytics with every network path closed, and return its `YOLO` class."""
    global _PATCHED
    if not _PATCHED:
        if _IMPORTED_EARLY:
            log.warning("ultralytics was imported before cascade_defect.specialist.offline; "
                        "its import-time online probe may already have run")
        import ultralytics.utils as uutils

        for handler in uutils.LOGGER.handlers:  # logs belong on stderr: stdout carries --json output
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
                handler.setStream(sys.stderr)
        uutils.ONLINE = False
        uutils.is_online = lambda: False
        _disable_settings_sync()

        import ultralytics.utils.checks as checks
        import ultralytics.utils.downloads as downloads

        checks.ONLINE = False
        checks.check_font = _local_font
        checks.check_amp = _offline_check_amp
        downloads.is_online = lambda: False
        downloads.attempt_download_asset = _no_download_asset

        import ultralytics.utils.patches as patches

        # Ultralytics wraps PIL.Image.open: on an unreadable image it tries to pip-install
        # pi-heif and retries. Mark its plugins as done so a corrupt file just fails.
        if importlib.util.find_spec("pi_heif") is not None and not patches._pil_plugins_registered:
            from pi_heif import register_heif_opener

            register_heif_opener()
        patches._pil_plugins_registered = True

        import ultralytics.utils.events as events

        events.ONLINE = False
        events.events.enabled = False

        import ultralytics.utils.callbacks.platform as platform

        platform.callbacks.clear()

        import ultralytics.data.utils as data_utils
        import ultralytics.engine.trainer as trainer
        import ultralytics.nn.tasks as tasks
        import ultralytics.utils.plotting as plotting

        data_utils.check_font = _local_font
        data_utils.download = _no_dataset_download
        data_utils.safe_download = _no_dataset_download
        plotting.check_font = _local_font
        trainer.check_amp = _offline_check_amp
        if hasattr(tasks, "attempt_download_asset"):
            tasks.attempt_download_asset = _no_download_asset
        if importlib.util.find_spec("polars") is None:  # e.g. a bare GPU image: results.csv via csv
            trainer.BaseTrainer.read_results_csv = _read_results_csv
        _PATCHED = True
    from ultralytics import YOLO

    return YOLO


@contextmanager
def network_attempts_blocked(record: list[str] | None = None) -> Iterator[list[str]]:
    """Make every non-loopback connect or DNS lookup raise, recording each attempt.

    Used by the tests to prove that import, training, validation, prediction and export never
    touch the network. Loopback addresses and Unix sockets stay usable.
    """
    attempts: list[str] = [] if record is None else record
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo
    real_create_connection = socket.create_connection

    def _loopback(host: Any) -> bool:
        return str(host) in ("localhost", "::1", "") or str(host).startswith("127.")

    def _check(address: Any) -> None:
        if isinstance(address, (str, bytes)):  # Unix socket path
            return
        host = address[0] if isinstance(address, tuple) and address else address
        if not _loopback(host):
            attempts.append(f"connect {address!r}")
            raise OSError(f"network blocked: connect to {address!r}")

    def connect(self, address):  # type: ignore[no-untyped-def]
        _check(address)
        return real_connect(self, address)

    def connect_ex(self, address):  # type: ignore[no-untyped-def]
        _check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host is not None and not _loopback(host.decode() if isinstance(host, bytes) else host):
            attempts.append(f"getaddrinfo {host!r}")
            raise socket.gaierror(f"network blocked: DNS lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def create_connection(address, *args, **kwargs):  # type: ignore[no-untyped-def]
        _check(address)
        return real_create_connection(address, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.create_connection = create_connection  # type: ignore[assignment]
    try:
        yield attempts
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo  # type: ignore[assignment]
        socket.create_connection = real_create_connection  # type: ignore[assignment]
