"""Model files: deployable weights (``.safetensors`` + JSON metadata) and the training resume state.

This module is where ``engine`` and ``inference`` meet:

- :func:`save_weights` / :func:`load_weights` / :func:`load_model`: one ``.safetensors`` file; its metadata
  holds one key ``"microcnn"`` with JSON (model name and kwargs, task, class names, target names and units,
  normalisation, preprocessing, training pixel size, metrics, data and split hashes, version). Loading
  never unpickles; the model is rebuilt with ``build_model`` and loaded with ``strict=True``.
- :func:`save_resume_state` / :func:`load_resume_state`: ``last.pt`` written atomically (temp file in the
  same folder, fsync, ``os.replace``) and read with ``torch.load(weights_only=True)``; a pickle with a
  payload is refused and never runs, and there is no second, unsafe attempt.

Non-finite weights are never saved.

Example:
    >>> save_weights(net, "m.safetensors", {"model": {"name": "unet", "num_classes": 2}})  # doctest: +SKIP
    >>> net, meta = load_model("m.safetensors")                                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from microcnn.errors import ModelFileError

META_KEY = "microcnn"
_ZIP_MAGIC = b"PK\x03\x04"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and ``torch.compile`` wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def check_finite(state: dict[str, torch.Tensor], what: str) -> None:
    """Raise ModelFileError naming the first tensor holding NaN or inf (such weights are never saved)."""
    for key, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ModelFileError(f"Refusing to save {what}: tensor '{key}' holds NaN or inf values.")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` via ``write(fileobj)`` into a temp file beside it, fsync, then rename over ``path``.

    A crash or SIGKILL at any moment leaves either the old file or the new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def save_weights(
    model: nn.Module | dict[str, torch.Tensor], path: str | Path, metadata: dict[str, Any]
) -> Path:
    """Write the model's state dict as ``.safetensors`` with ``metadata`` stored as JSON (atomically).

    Args:
        model: a module (DDP / compiled wrappers are unwrapped) or a state dict.
        path: output file, conventionally ``model.safetensors``.
        metadata: JSON-serialisable facts; must hold ``"model": {"name": ..., **kwargs}`` for
            :func:`load_model`.
    """
    from safetensors.torch import save

    state = model if isinstance(model, dict) else unwrap(model).state_dict()
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    check_finite(tensors, f"weights to '{path}'")
    try:
        text = json.dumps(metadata, allow_nan=True, default=str)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"Model metadata is not JSON-serialisable: {exc}") from None
    blob = save(tensors, metadata={META_KEY: text, "format": "pt"})
    return atomic_write(path, lambda fh: fh.write(blob))


def _sniff(path: Path) -> bytes:
    """The first 9 bytes of ``path``; missing or empty files raise ModelFileError."""
    if not path.is_file():
        raise ModelFileError(f"Model file '{path}' not found.")
    with path.open("rb") as fh:
        head = fh.read(9)
    if not head:
        raise ModelFileError(f"Model file '{path}' is empty: corrupt or unsupported model file.")
    return head


def _is_safetensors(head: bytes, size: int) -> bool:
    """safetensors = u64 little-endian header length, then that many bytes of JSON starting with '{'."""
    return len(head) == 9 and int.from_bytes(head[:8], "little") <= size - 8 and head[8:9] == b"{"


def _unsupported(path: Path, why: str) -> ModelFileError:
    return ModelFileError(
        f"'{path}' is a corrupt or unsupported model file ({why}). microcnn loads weights from the "
        "'.safetensors' files it writes (runs/<name>/model.safetensors)."
    )


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a ``.safetensors`` file: (state dict of CPU tensors, metadata dict). Never unpickles.

    Raises:
        ModelFileError: missing, empty, truncated, pickle/zip (``torch.save``, TorchScript), or a damaged
            safetensors header.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    head = _sniff(path)
    if not _is_safetensors(head, path.stat().st_size):
        if head.startswith(_ZIP_MAGIC):
            why = "a PyTorch zip archive (torch.save or TorchScript), which needs unpickling"
        elif head[:1] == b"\x80":
            why = "a Python pickle, which could run code when loaded"
        else:
            why = "no safetensors header"
        raise _unsupported(path, why)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw_meta = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _unsupported(path, f"{type(exc).__name__}: {exc}") from None
    try:
        metadata = json.loads(raw_meta.get(META_KEY, "{}"))
    except json.JSONDecodeError as exc:
        raise _unsupported(path, f"its '{META_KEY}' metadata is not JSON: {exc}") from None
    return state, metadata


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model described in the file's metadata and load its weights with ``strict=True``.

    Returns (model in eval mode on ``device``, metadata). A state dict that does not fit the architecture
    raises ModelFileError naming the missing and unexpected keys.

    Example:
        >>> net, meta = load_model("runs/seg/model.safetensors")   # doctest: +SKIP
        >>> meta["task"], meta["class_names"]                       # doctest: +SKIP
        ('segmentation', ['matrix', 'second_phase'])
    """
    from microcnn.models import build_model

    state, metadata = load_weights(path)
    spec = metadata.get("model")
    if not isinstance(spec, dict) or "name" not in spec:
        raise ModelFileError(
            f"'{path}' has no model description in its metadata (key '{META_KEY}' -> 'model'); it was not "
            "written by microcnn's save_weights."
        )
    model = build_model(dict(spec))
    load_state_strict(model, state, where=str(path))
    return model.to(device).eval(), metadata


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], *, where: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names missing / unexpected / mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise ModelFileError(
            f"Weights in '{where}' do not fit the model {type(model).__name__}: "
            f"missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}, "
            f"shape mismatches {shapes[:4]}. Check the model name and kwargs."
        )
    model.load_state_dict(state, strict=True)


def save_resume_state(state: dict[str, Any], path: str | Path) -> Path:
    """Write the resume state (``last.pt``) atomically; refuses non-finite model weights.

    ``state`` must hold only tensors, numbers, strings, lists, tuples and dicts (so that
    ``torch.load(weights_only=True)`` can read it back).
    """
    check_finite(state.get("model", {}), f"the resume state '{path}'")
    return atomic_write(path, lambda fh: torch.save(state, fh))


def load_resume_state(path: str | Path) -> dict[str, Any]:
    """Read ``last.pt`` with ``torch.load(weights_only=True)`` (pickled objects with code are refused)."""
    path = Path(path)
    _sniff(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False; we never retry unsafely, so it is not shown.
        raise ModelFileError(
            f"Refused to load '{path}': it holds pickled objects other than tensors and plain numbers, "
            "which could run code. It was not written by microcnn, or it was altered; it was not loaded."
        ) from None
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
    ) as exc:
        # torch's texts suggest weights_only=False; we never retry unsafely, so only the gist is shown
        why = "a TorchScript archive" if "TorchScript" in str(exc) else f"unreadable: {type(exc).__name__}"
        raise ModelFileError(
            f"'{path}' is a corrupt or unsupported resume file ({why}); expected a last.pt written by "
            "microcnn train."
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise ModelFileError(f"'{path}' is not a microcnn resume state (no 'model' entry).")
    return state
