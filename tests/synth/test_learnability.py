"""The six classes differ in morphology, not in brightness: a tiny CNN separates them, mean intensity cannot.

Fast variant: 128 x 128 micrographs viewed at 64 x 64 (2 x 2 binning, a lower magnification), 60 per class
for training, 20 per class held out (a different seed). ~30 s on the 2-core CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from microcnn.synth import CLASS_NAMES, make_dataset

N_CLASSES = len(CLASS_NAMES)


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    samples = list(make_dataset("classification", n=n, size=128, seed=seed, properties=[]))
    images = np.stack([s.image for s in samples]).reshape(n, 64, 2, 64, 2).mean(axis=(2, 4))
    return images, np.array([s.label for s in samples])


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x_train, y_train = _data(60 * N_CLASSES, seed=100)
    x_test, y_test = _data(20 * N_CLASSES, seed=200)
    return x_train, y_train, x_test, y_test


def _gaussian_mean_intensity_accuracy(x_train, y_train, x_test, y_test) -> float:
    """A 1-D classifier on one feature: per-class Gaussian likelihood of the mean intensity."""
    f_train, f_test = x_train.mean(axis=(1, 2)), x_test.mean(axis=(1, 2))
    mu = np.array([f_train[y_train == k].mean() for k in range(N_CLASSES)])
    sd = np.array([f_train[y_train == k].std() + 1e-6 for k in range(N_CLASSES)])
    loglik = -0.5 * ((f_test[:, None] - mu) / sd) ** 2 - np.log(sd)
    return float(np.mean(loglik.argmax(axis=1) == y_test))


def _tiny_cnn():
    from torch import nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(
        *block(1, 16),
        *block(16, 32),
        *block(32, 64),
        *block(64, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, N_CLASSES),
    )


def _standardise(x: np.ndarray):
    import torch

    x = (x - x.mean(axis=(1, 2), keepdims=True)) / (x.std(axis=(1, 2), keepdims=True) + 1e-6)
    return torch.from_numpy(x[:, None].astype(np.float32))


def _train_and_score(x_train, y_train, x_test, y_test, *, epochs: int = 25) -> float:
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _tiny_cnn()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        xt, yt = _standardise(x_train), torch.from_numpy(y_train)
        gen = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            model.train()
            for idx in torch.randperm(len(xt), generator=gen).split(16)[
                :-1
            ]:  # drop the short last batch (BatchNorm)
                loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with torch.inference_mode():
            pred = model(_standardise(x_test)).argmax(dim=1).numpy()
    return float(np.mean(pred == y_test))


def test_mean_intensity_alone_is_far_from_enough(split):
    acc = _gaussian_mean_intensity_accuracy(*split)
    assert acc < 0.6, f"classes are separable by brightness alone ({acc:.2f})"


def test_a_tiny_cnn_separates_the_classes(split):
    acc = _train_and_score(*split)
    assert acc > 0.9, f"held-out accuracy {acc:.2f}"
