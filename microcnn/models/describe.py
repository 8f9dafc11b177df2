"""``describe(model, input_shape)``: a per-layer table of shapes, parameters, receptive field and FLOPs.

One forward pass of a zero batch ``(1, C, H, W)`` (eval mode, no grad) with forward hooks on the leaf
modules gives one row per leaf call (a module called twice gives two rows; its parameters count once;
``nn.Identity`` is skipped). Columns: output shape (C×H×W), parameters (trainable / frozen), kernel,
stride, padding, dilation, receptive field (rows × cols, px of the input), cumulative stride ("jump",
input px per feature px) and FLOPs.

How the numbers are made:
- Receptive field and jump follow each tensor: a conv/pool with kernel k, stride s, dilation d maps
  (r, j) to (r + d(k-1)·j, j·s). Operations outside modules (``+``, ``torch.cat``, padding, interpolation)
  are seen through a ``TorchFunctionMode``: their output takes the **largest** receptive field of their
  inputs (residual sums, Inception concatenation, U-Net skips) and the jump scaled by the size ratio.
  Transposed convolutions and unpooling divide the jump by the stride; global/adaptive pooling widens
  the field to everything its window covers.
- FLOPs count multiply-adds as 2 for Conv2d (2·k²·C_in·C_out·H_out·W_out/groups), ConvTranspose2d
  (2·k²·C_in·C_out·H_in·W_in/groups) and Linear, as ``torch.utils.flop_counter`` does. Bias additions
  are left out unless ``count_bias=True``; norms, activations and pooling count 0.

Example:
    >>> from microcnn.models import build_model
    >>> table = describe(build_model("lenet5"), (1, 32, 32))
    >>> table.totals["params"]
    61706
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakTensorKeyDictionary

Pair = tuple[float, float]


def conv_output_size(n: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """Output length of a convolution or pooling: floor((n + 2p − d(k − 1) − 1) / s) + 1."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def conv_transpose_output_size(
    n: int, k: int, s: int = 1, p: int = 0, d: int = 1, output_padding: int = 0
) -> int:
    """Output length of a transposed convolution: (n − 1)s − 2p + d(k − 1) + output_padding + 1."""
    return (n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1


@dataclass
class LayerRow:
    """One leaf-module call. Shapes exclude the batch; ``rf`` and ``jump`` are (rows, cols) in input px."""

    index: int
    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    trainable: int
    frozen: int
    kernel: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    padding: tuple[int, ...] | str | None
    dilation: tuple[int, ...] | None
    rf: tuple[float, float] | None
    jump: tuple[float, float] | None
    flops: int


@dataclass
class LayerTable:
    """The rows of :func:`describe` and the totals (params, trainable, frozen, flops, shapes, final rf)."""

    rows: list[LayerRow]
    totals: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        """Rows as plain dicts with printable cells (``3×3``, ``6×28×28``, ``-`` for not applicable)."""
        return [{k: _cell(v) for k, v in asdict(r).items()} for r in self.rows]

    def to_dataframe(self):
        """A pandas DataFrame, one row per layer call."""
        import pandas as pd

        return pd.DataFrame(self.records())

    def to_csv(self) -> str:
        """CSV text with a header row."""
        import csv

        buf = io.StringIO()
        records = self.records()
        writer = csv.DictWriter(buf, fieldnames=list(records[0]) if records else ["index"])
        writer.writeheader()
        writer.writerows(records)
        return buf.getvalue()

    def to_json(self) -> str:
        """JSON ``{"rows": [...], "totals": {...}}`` with raw numbers and lists."""
        return json.dumps({"rows": [asdict(r) for r in self.rows], "totals": self.totals}, indent=1)

    def to_markdown(self) -> str:
        """A Markdown table followed by a totals line."""
        records = self.records()
        if not records:
            return "(no layers)"
        head = list(records[0])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in records]
        t = self.totals
        lines.append(
            f"\nTotal params: {t['params']:,} (trainable {t['trainable']:,}, frozen {t['frozen']:,}); "
            f"FLOPs: {t['flops']:,}; input {_cell(t['input_shape'])} -> output {_cell(t['output_shape'])}; "
            f"receptive field {_cell(t['rf'])} px."
        )
        return "\n".join(lines)


def _cell(v: Any) -> Any:
    if v is None:
        return "-"
    if isinstance(v, (tuple, list)):
        if len(v) == 2 and v[0] == v[1] and all(isinstance(x, (int, float)) for x in v):
            return _num(v[0])
        return "×".join(_num(x) for x in v)
    return v


def _num(x: Any) -> str:
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() else f"{x:.3g}"
    return str(x)


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)[:2]  # type: ignore[return-value]


def _geometry(m: nn.Module) -> dict[str, Any]:
    """Kernel, stride, padding and dilation (as pairs) of conv and pooling modules; {} for others."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d, nn.MaxUnpool2d)):
        stride = m.stride if m.stride is not None else m.kernel_size
        pad = m.padding if isinstance(m.padding, str) else _pair(m.padding)
        return {
            "kernel": _pair(m.kernel_size),
            "stride": _pair(stride),
            "padding": pad,
            "dilation": _pair(getattr(m, "dilation", 1)),
        }
    return {}


def _adaptive_window(n: int, out: int) -> tuple[int, float]:
    """Largest window and mean stride of adaptive pooling from n to out (PyTorch's floor/ceil bounds)."""
    window = max(math.ceil((i + 1) * n / out) - math.floor(i * n / out) for i in range(out))
    return window, n / out


def _propagate(m: nn.Module, rf: Pair, jump: Pair, x: torch.Tensor, y: torch.Tensor) -> tuple[Pair, Pair]:
    """Receptive field and jump after module ``m`` (see the module docstring for the rules)."""
    g = _geometry(m)
    if isinstance(m, nn.ConvTranspose2d | nn.MaxUnpool2d):
        k, s, d = g["kernel"], g["stride"], g["dilation"]
        rf = tuple(
            r + (math.ceil((di * (ki - 1) + 1) / si) - 1) * j for r, ki, si, di, j in zip(rf, k, s, d, jump)
        )
        return rf, tuple(j / si for j, si in zip(jump, s))
    if g:
        k, s, d = g["kernel"], g["stride"], g["dilation"]
        rf = tuple(r + di * (ki - 1) * j for r, ki, di, j in zip(rf, k, d, jump))
        return rf, tuple(j * si for j, si in zip(jump, s))
    if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d) and x.ndim == 4:
        wins = [_adaptive_window(n, o) for n, o in zip(x.shape[-2:], y.shape[-2:])]
        rf = tuple(r + (w - 1) * j for r, (w, _), j in zip(rf, wins, jump))
        return rf, tuple(j * s for j, (_, s) in zip(jump, wins))
    return rf, _scaled_jump(jump, x, y)


def _scaled_jump(jump: Pair, x: torch.Tensor, y: torch.Tensor) -> Pair:
    """Jump after a resampling by an integer factor (upsampling, pixel shuffle); padding and cropping,
    which change the size by less than 1.5×, keep the jump."""
    if not (x.ndim >= 3 and y.ndim == x.ndim and min(y.shape[-2:]) > 0):
        return jump
    return tuple(j * _factor(a / b) for j, a, b in zip(jump, x.shape[-2:], y.shape[-2:]))


def _factor(ratio: float) -> float:
    if ratio >= 1.5:
        return float(round(ratio))
    if ratio <= 1 / 1.5:
        return 1.0 / round(1.0 / ratio)
    return 1.0


def _flops(m: nn.Module, x: torch.Tensor, y: torch.Tensor, count_bias: bool) -> int:
    """2 × multiply-adds of conv / conv-transpose / linear (per sample); optional bias additions."""
    if isinstance(m, nn.Conv2d):
        macs = m.weight.numel() * y.shape[-2] * y.shape[-1]  # weight = C_out·C_in/groups·k²
    elif isinstance(m, nn.ConvTranspose2d):
        macs = m.weight.numel() * x.shape[-2] * x.shape[-1]  # weight = C_in·C_out/groups·k²
    elif isinstance(m, nn.Linear):
        macs = m.weight.numel() * (y.numel() // y.shape[0] // m.out_features)
    else:
        return 0
    bias = y.numel() // y.shape[0] if (count_bias and m.bias is not None) else 0
    return 2 * macs + bias


class _Tracker(TorchFunctionMode):
    """Gives every tensor made by a torch function the largest receptive field of its inputs."""

    def __init__(self, fields: WeakTensorKeyDictionary) -> None:
        super().__init__()
        self.fields = fields

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        known = [(t, self.fields[t]) for t in tensors if t in self.fields]
        if known:
            src, _ = max(known, key=lambda tf: tf[1][0])
            rf = tuple(max(f[0][i] for _, f in known) for i in range(2))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and t not in self.fields:
                    self.fields[t] = (rf, _scaled_jump(min(f[1] for _, f in known), src, t))
        return out


def parse_input_shape(shape: str | tuple[int, ...] | list[int]) -> tuple[int, int, int]:
    """``"1x256x256"`` or ``(1, 256, 256)`` -> (C, H, W); anything else -> ValueError with an example."""
    try:
        dims = tuple(
            int(v) for v in (shape.lower().replace("×", "x").split("x") if isinstance(shape, str) else shape)
        )
    except (TypeError, ValueError):
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"Input shape must be C×H×W with positive sizes, e.g. 1x256x256; got {shape!r}.")
    return dims  # type: ignore[return-value]


def describe(
    model: nn.Module, input_shape: str | tuple[int, ...] = (1, 256, 256), *, count_bias: bool = False
) -> LayerTable:
    """Per-layer table of ``model`` for one input of ``input_shape`` = (C, H, W) (or ``"1x256x256"``).

    Runs one forward pass on a zero tensor on the model's device, in eval mode (the training mode is
    restored). Totals: ``params`` / ``trainable`` / ``frozen`` from ``model.parameters()``, ``flops``
    (sum of the rows), ``input_shape``, ``output_shape`` and ``rf`` (receptive field of the output).

    Example:
        >>> import torch.nn as nn
        >>> describe(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)), (1, 9, 9)).totals["rf"]
        (5.0, 5.0)
    """
    c, h, w = parse_input_shape(input_shape)
    param = next(model.parameters(), None)
    x = torch.zeros(1, c, h, w, device=param.device if param is not None else "cpu")
    fields = WeakTensorKeyDictionary()
    fields[x] = ((1.0, 1.0), (1.0, 1.0))
    names = {m: n or type(m).__name__ for n, m in model.named_modules()}
    rows: list[LayerRow] = []
    seen: set[int] = set()
    keep: list[torch.Tensor] = []  # keep outputs alive so the weak keys stay valid during the pass

    def hook(m: nn.Module, inputs: tuple, output: Any) -> None:
        xin = next((t for t in tree_flatten(inputs)[0] if isinstance(t, torch.Tensor)), None)
        y = output[0] if isinstance(output, (tuple, list)) else output
        if xin is None or not isinstance(y, torch.Tensor):
            return
        rf, jump = fields.get(xin, ((1.0, 1.0), (1.0, 1.0)))
        rf, jump = _propagate(m, rf, jump, xin, y)
        fields[y] = (rf, jump)
        keep.append(y)
        rows.append(
            _row(
                m, len(rows), names.get(m, type(m).__name__), y, rf, jump, seen, _flops(m, xin, y, count_bias)
            )
        )

    leaves = [m for m in model.modules() if not list(m.children()) and not isinstance(m, nn.Identity)]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), _Tracker(fields):
            out = model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return LayerTable(rows, _totals(model, rows, (c, h, w), out, fields))


def _row(m, index, name, y, rf, jump, seen: set[int], flops: int) -> LayerRow:
    own = [p for p in m.parameters(recurse=False) if id(p) not in seen]
    seen.update(id(p) for p in own)
    trainable = sum(p.numel() for p in own if p.requires_grad)
    frozen = sum(p.numel() for p in own if not p.requires_grad)
    g = _geometry(m)
    return LayerRow(
        index=index, name=name, type=type(m).__name__, output_shape=tuple(y.shape[1:]),
        params=trainable + frozen, trainable=trainable, frozen=frozen,
        kernel=g.get("kernel"), stride=g.get("stride"), padding=g.get("padding"), dilation=g.get("dilation"),
        rf=rf, jump=jump, flops=flops,
    )  # fmt: skip


def _totals(model: nn.Module, rows: list[LayerRow], shape, out: Any, fields) -> dict[str, Any]:
    y = out[0] if isinstance(out, (tuple, list)) else out
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    rf = fields[y][0] if isinstance(y, torch.Tensor) and y in fields else (rows[-1].rf if rows else None)
    return {
        "params": trainable + frozen,
        "trainable": trainable,
        "frozen": frozen,
        "flops": sum(r.flops for r in rows),
        "input_shape": tuple(shape),
        "output_shape": tuple(y.shape[1:]) if isinstance(y, torch.Tensor) else None,
        "rf": rf,
    }
