"""Small, exact demonstrations of CNN ideas for the app's Learn page and for course notebooks.

Each function is a thin, inspectable wrapper around the real torch operator a CNN uses, so what a student
sees is what a model computes: ``convolve`` calls ``torch.nn.functional.conv2d`` (cross-correlation, as
in every CNN library), ``pool`` and ``upsample`` call the pooling / interpolation / transposed-convolution
/ max-unpooling operators, ``activation_curves`` differentiates with autograd, ``optimizer_race`` runs
``torch.optim`` optimizers, and ``regularization_run`` trains a tiny network with and without dropout and
batch normalisation. Arrays in and out are numpy; rows and columns, not x and y.

Nothing here imports streamlit; torch is imported inside the functions so ``import microcnn.teach`` is
light.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from microcnn.registry import check_choice

# 3x3 teaching kernels (rows x cols). Cross-correlation: kernel[0, 0] meets the top-left neighbour.
KERNELS: dict[str, np.ndarray] = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32),
    "edge (Laplacian)": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float32),
    "vertical edge (Sobel)": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32),
    "horizontal edge (Sobel)": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float32),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float32),
    "Gaussian blur": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 16.0,
    "box blur": np.full((3, 3), 1.0 / 9.0, dtype=np.float32),
}
POOL_MODES = ("max", "average")
UPSAMPLE_MODES = ("nearest", "bilinear", "transpose", "unpool")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "mish", "tanh", "sigmoid", "softplus", "softsign")
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
PROBLEMS = ("quadratic", "rosenbrock")


def _as_map(image: np.ndarray) -> Any:
    """(H, W) numpy array -> (1, 1, H, W) float32 torch tensor."""
    import torch

    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 2 or min(array.shape) < 1:
        raise ValueError(
            f"expected a 2-D (H, W) feature map with at least 1 px per side; got shape {array.shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(array))[None, None]


def convolve(
    image: np.ndarray,
    kernel: np.ndarray,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """Cross-correlate a (H, W) map with a (k_rows, k_cols) kernel exactly as ``nn.Conv2d`` does.

    Args:
        image: (H, W) float array.
        kernel: (kh, kw) float array; not flipped (CNNs use cross-correlation).
        stride, padding, dilation: in px, as for ``nn.Conv2d``.
        padding_mode: "zeros" or "reflect".

    Returns:
        (H_out, W_out) float32 with H_out = floor((H + 2p - d(kh - 1) - 1) / s) + 1 (and likewise W_out).

    Example:
        >>> convolve(np.eye(4), KERNELS["identity"], padding=1).shape
        (4, 4)
    """
    import torch.nn.functional as F

    check_choice("padding mode", padding_mode, ("zeros", "reflect"))
    _check_positive(stride=stride, dilation=dilation)
    if padding < 0:
        raise ValueError(f"padding must be >= 0 px; got {padding}")
    x = _as_map(image)
    w = _as_map(kernel)
    span = [dilation * (k - 1) + 1 for k in w.shape[-2:]]
    if any(n + 2 * padding < s for n, s in zip(x.shape[-2:], span)):
        raise ValueError(
            f"the dilated kernel spans {span[0]}x{span[1]} px but the padded input is only "
            f"{x.shape[-2] + 2 * padding}x{x.shape[-1] + 2 * padding} px; reduce dilation or add padding"
        )
    if padding and padding_mode == "reflect":
        x = F.pad(x, (padding,) * 4, mode="reflect")
        padding = 0
    out = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
    return out[0, 0].numpy()


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer; got {value}")


def pool(
    image: np.ndarray, *, mode: str = "max", kernel: int = 2, stride: int | None = None
) -> dict[str, Any]:
    """Max or average pooling of a (H, W) map.

    Returns:
        dict with "output" (H_out, W_out) float32 and, for max pooling, "indices" (H_out, W_out) int64 flat
        positions of each maximum in the input (what max-unpooling needs), else None.
    """
    import torch.nn.functional as F

    check_choice("pooling mode", mode, POOL_MODES)
    stride = kernel if stride is None else stride
    _check_positive(kernel=kernel, stride=stride)
    x = _as_map(image)
    if mode == "max":
        out, idx = F.max_pool2d(x, kernel, stride=stride, return_indices=True)
        return {"output": out[0, 0].numpy(), "indices": idx[0, 0].numpy()}
    return {"output": F.avg_pool2d(x, kernel, stride=stride)[0, 0].numpy(), "indices": None}


def upsample(
    feature_map: np.ndarray,
    *,
    mode: str = "nearest",
    scale: int = 2,
    indices: np.ndarray | None = None,
    output_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Enlarge a (h, w) map by ``scale`` with one of the decoder's upsampling modes.

    Modes: "nearest" (copy each value), "bilinear" (``align_corners=False``), "transpose" (a stride-``scale``
    transposed convolution with a ``scale`` x ``scale`` kernel of ones: untrained, every input spreads its
    value over a block, so it equals "nearest" until training changes the kernel), "unpool" (max-unpooling:
    each value goes back to the position its max-pool ``indices`` recorded; zeros elsewhere).

    Returns:
        (h * scale, w * scale) float32 (or ``output_shape`` for "unpool" when given).
    """
    import torch
    import torch.nn.functional as F

    check_choice("upsampling mode", mode, UPSAMPLE_MODES)
    _check_positive(scale=scale)
    x = _as_map(feature_map)
    if mode == "nearest":
        out = F.interpolate(x, scale_factor=scale, mode="nearest")
    elif mode == "bilinear":
        out = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    elif mode == "transpose":
        out = F.conv_transpose2d(x, torch.ones(1, 1, scale, scale), stride=scale)
    else:
        if indices is None:
            raise ValueError(
                "mode 'unpool' needs the max-pool indices: pass indices=pool(..., mode='max')['indices']"
            )
        idx = torch.from_numpy(np.asarray(indices, dtype=np.int64))[None, None]
        size = output_shape or (x.shape[-2] * scale, x.shape[-1] * scale)
        out = F.max_unpool2d(x, idx, kernel_size=scale, output_size=size)
    return out[0, 0].numpy()


def activation_curves(
    names: tuple[str, ...] | list[str] = ACTIVATIONS, *, x: np.ndarray | None = None
) -> dict:
    """Each activation f and its derivative f' (by autograd) on a grid.

    Args:
        names: activation names from ``ACTIVATIONS``.
        x: (N,) inputs; default 401 points in [-4, 4].

    Returns:
        {"x": (N,) float32, name: {"f": (N,), "df": (N,)} ...}. At x = 0 ReLU's derivative is 0 (torch's
        convention for the kink).
    """
    import torch

    functions = {
        "relu": torch.relu,
        "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, 0.1),
        "elu": torch.nn.functional.elu,
        "gelu": torch.nn.functional.gelu,
        "silu": torch.nn.functional.silu,
        "mish": torch.nn.functional.mish,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "softplus": torch.nn.functional.softplus,
        "softsign": torch.nn.functional.softsign,
    }
    grid = np.linspace(-4, 4, 401, dtype=np.float32) if x is None else np.asarray(x, dtype=np.float32)
    curves: dict[str, Any] = {"x": grid}
    for name in names:
        check_choice("activation", name, ACTIVATIONS)
        t = torch.tensor(grid, requires_grad=True)
        y = functions[name](t)
        (dy,) = torch.autograd.grad(y.sum(), t)
        curves[name] = {"f": y.detach().numpy(), "df": dy.numpy()}
    return curves


def _loss(problem: str, p: Any) -> Any:
    if problem == "quadratic":  # an elongated bowl: f = 0.5 (x² + 10 y²), minimum 0 at (0, 0)
        return 0.5 * (p[0] ** 2 + 10.0 * p[1] ** 2)
    return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2  # Rosenbrock, minimum 0 at (1, 1)


def _optimizer(name: str, params: list[Any], lr: float) -> Any:
    import torch

    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.RMSprop(params, lr=lr)


def optimizer_race(
    *,
    optimizers: tuple[str, ...] | list[str] = OPTIMIZERS,
    problem: str = "quadratic",
    steps: int = 100,
    lr: float | dict[str, float] = 0.05,
    start: tuple[float, float] = (-1.5, 1.5),
) -> dict[str, dict[str, np.ndarray]]:
    """Run each optimizer from the same start on a 2-parameter problem.

    Args:
        optimizers: names from ``OPTIMIZERS`` ("momentum" is SGD with momentum 0.9).
        problem: "quadratic" (0.5 (x² + 10 y²)) or "rosenbrock" ((1 - x)² + 100 (y - x²)²).
        steps: optimizer steps.
        lr: one learning rate for all, or one per optimizer name.
        start: starting point (x, y).

    Returns:
        {name: {"loss": (steps + 1,) float64 losses before each step and after the last,
                "path": (steps + 1, 2) float64 parameter positions}}.
    """
    import torch

    check_choice("problem", problem, PROBLEMS)
    _check_positive(steps=steps)
    race: dict[str, dict[str, np.ndarray]] = {}
    for name in optimizers:
        check_choice("optimizer", name, OPTIMIZERS)
        rate = lr[name] if isinstance(lr, dict) else lr
        p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        opt = _optimizer(name, [p], rate)
        losses, path = [], [p.detach().numpy().copy()]
        for _ in range(steps):
            opt.zero_grad()
            loss = _loss(problem, p)
            loss.backward()
            losses.append(float(loss.detach()))
            opt.step()
            path.append(p.detach().numpy().copy())
        losses.append(float(_loss(problem, p.detach())))
        race[name] = {"loss": np.array(losses), "path": np.array(path)}
    return race


def _two_moons_ish(n: int, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """(n, 2) points on two interleaved half circles and (n,) labels 0/1, with Gaussian noise."""
    labels = rng.integers(0, 2, size=n)
    angle = rng.uniform(0, np.pi, size=n)
    x = np.where(labels == 0, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(labels == 0, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], axis=1) + rng.normal(0, noise, size=(n, 2))
    return points.astype(np.float32), labels.astype(np.int64)


def regularization_run(
    *,
    dropout: float = 0.0,
    batch_norm: bool = False,
    epochs: int = 150,
    n_train: int = 40,
    n_val: int = 400,
    hidden: int = 64,
    lr: float = 0.01,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Train a small MLP (2 -> hidden -> hidden -> 2) on a noisy two-moons set; return its curves.

    With few training points a wide network memorises them (train loss -> 0, validation loss rises);
    dropout and batch normalisation change that gap. Full-batch Adam; the seed fixes data and weights.

    Returns:
        {"train_loss": (epochs,), "val_loss": (epochs,), "val_accuracy": (epochs,)} float64 arrays
        (losses are cross-entropy in nats; the train loss is measured in eval mode, without dropout).
    """
    import torch

    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout}")
    _check_positive(epochs=epochs, n_train=n_train, n_val=n_val, hidden=hidden)
    rng = np.random.default_rng(seed)
    xt, yt = (torch.from_numpy(a) for a in _two_moons_ish(n_train, rng, 0.25))
    xv, yv = (torch.from_numpy(a) for a in _two_moons_ish(n_val, rng, 0.25))
    with torch.random.fork_rng(
        devices=[]
    ):  # the seed governs init and dropout here, global state is restored
        torch.manual_seed(seed)
        return _train_mlp(
            xt, yt, xv, yv, dropout=dropout, batch_norm=batch_norm, epochs=epochs, hidden=hidden, lr=lr
        )


def _train_mlp(
    xt: Any,
    yt: Any,
    xv: Any,
    yv: Any,
    *,
    dropout: float,
    batch_norm: bool,
    epochs: int,
    hidden: int,
    lr: float,
) -> dict[str, np.ndarray]:
    import torch
    from torch import nn

    layers: list[nn.Module] = []
    for size_in in (2, hidden):
        layers += [nn.Linear(size_in, hidden)]
        layers += [nn.BatchNorm1d(hidden)] if batch_norm else []
        layers += [nn.ReLU(), nn.Dropout(dropout)]
    model = nn.Sequential(*layers, nn.Linear(hidden, 2))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curves: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    for _ in range(epochs):
        model.train()
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
        model.eval()
        with torch.inference_mode():
            curves["train_loss"].append(float(nn.functional.cross_entropy(model(xt), yt)))
            logits = model(xv)
            curves["val_loss"].append(float(nn.functional.cross_entropy(logits, yv)))
            curves["val_accuracy"].append(float((logits.argmax(1) == yv).double().mean()))
    return {k: np.array(v) for k, v in curves.items()}
