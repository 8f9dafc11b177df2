"""Physics labels against hand calculations, scikit-image measured independently, and transport laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.measure import label, regionprops

from microcnn.synth.properties import measure, percolates, transport


def test_phase_fraction_and_diameter_by_hand():
    mask = np.zeros((20, 20), np.uint8)
    mask[1:5, 1:5] = 1  # 16 px square
    mask[10:12, 10:12] = 1  # 4 px square
    out = measure(
        mask,
        kind="spheroidal_particles",
        pixel_size_um=0.5,
        names=["phase_fraction", "mean_diameter_um", "n_objects"],
    )
    assert out["phase_fraction"] == 20 / 400
    d16, d4 = math.sqrt(4 * 16 / math.pi), math.sqrt(4 * 4 / math.pi)
    assert out["mean_diameter_um"] == pytest.approx(0.5 * (d16 + d4) / 2, rel=1e-12)
    assert out["n_objects"] == 2


def test_diagonal_neighbours_are_separate_objects():
    mask = np.zeros((6, 6), np.uint8)
    mask[1, 1] = mask[2, 2] = 1  # touch only at a corner: two 4-connected objects
    assert measure(mask, kind="porous", pixel_size_um=1.0, names=["n_objects"])["n_objects"] == 2


def test_grains_are_the_regions_between_boundaries():
    mask = np.zeros((10, 10), np.uint8)
    mask[:, 4] = 1  # one boundary column: grains of 40 and 50 px
    out = measure(mask, kind="equiaxed_grains", pixel_size_um=1.0, names=["mean_diameter_um", "n_objects"])
    assert out["n_objects"] == 2
    assert out["mean_diameter_um"] == pytest.approx((math.sqrt(160 / math.pi) + math.sqrt(200 / math.pi)) / 2)


def test_rows_marked_255_are_left_out():
    mask = np.zeros((10, 10), np.uint8)
    mask[:, :5] = 1
    mask[8:] = 255
    assert measure(mask, kind="porous", pixel_size_um=1.0, names=["phase_fraction"])["phase_fraction"] == 0.5


def test_unknown_property_suggests_a_name():
    with pytest.raises(ValueError, match="Did you mean 'tortuosity'"):
        measure(np.zeros((4, 4), np.uint8), kind="porous", pixel_size_um=1.0, names=["tortuosty"])


@pytest.mark.parametrize("period, width", [(4, 1), (5, 2), (8, 3)])
def test_straight_channels_have_unit_tortuosity_and_deff_equal_porosity(period, width):
    pores = np.zeros((48, 40), np.uint8)
    for start in range(0, 40, period):
        pores[:, start : start + width] = 1
    porosity = pores.mean()
    out = transport(pores, device="cpu")
    assert out["percolates"] == 1.0
    assert out["porosity"] == porosity
    assert out["tortuosity"] == pytest.approx(1.0, abs=1e-3)
    assert out["deff_ratio"] == pytest.approx(porosity, rel=1e-3)


def test_channels_across_the_flux_do_not_percolate_and_are_flagged():
    pores = np.zeros((40, 40), np.uint8)
    pores[::3] = 1  # rows of pores perpendicular to the solve direction (axis 0)
    out = transport(pores, device="cpu")
    assert out == {"porosity": pores.mean(), "percolates": 0.0, "tortuosity": math.inf, "deff_ratio": 0.0}
    assert not any(math.isnan(v) for v in out.values())


def test_percolation_needs_a_face_connected_path():
    pores = np.eye(12, dtype=np.uint8)  # diagonal chain: 8-connected only, no flux through corners
    assert not percolates(pores)
    pores[np.arange(11), np.arange(1, 12)] = 1  # staircase: now 4-connected top to bottom
    assert percolates(pores)


def test_random_pores_obey_the_transport_bounds():
    from microcnn.synth.generators import GENERATORS

    s = GENERATORS.build("porous", shape=(64, 64), rng=np.random.default_rng(4), porosity=0.65)
    out = transport(s.mask, device="cpu")
    assert out["percolates"] == 1.0
    # tortuosity factor >= 1 and D_eff/D0 = porosity / tau <= porosity (Wiener upper bound)
    assert out["tortuosity"] >= 1.0
    assert 0 < out["deff_ratio"] <= out["porosity"]
    assert out["deff_ratio"] == pytest.approx(out["porosity"] / out["tortuosity"], rel=1e-4)


@pytest.mark.parametrize("kind", ["spheroidal_particles", "dual_phase", "equiaxed_grains"])
def test_sizes_equal_regionprops_on_generated_masks(kind):
    from microcnn.synth.generators import GENERATORS

    mask = GENERATORS.build(kind, shape=(96, 96), rng=np.random.default_rng(9)).mask
    objects = (mask == 0) if kind == "equiaxed_grains" else (mask == 1)
    regions = regionprops(label(objects, connectivity=1))
    expected = np.mean([r.equivalent_diameter_area for r in regions]) * 0.2
    out = measure(mask, kind=kind, pixel_size_um=0.2, names=["mean_diameter_um", "n_objects"])
    assert out["mean_diameter_um"] == pytest.approx(expected, rel=1e-12)
    assert out["n_objects"] == len(regions)


def test_an_unconverged_solve_is_refused_not_stored():
    from microcnn.synth.generators import GENERATORS
    from microcnn.synth.properties import TransportNotConverged

    s = GENERATORS.build("porous", shape=(64, 64), rng=np.random.default_rng(4), porosity=0.65)
    # TauFactor checks convergence every 100 iterations: 50 can never converge
    with pytest.raises(TransportNotConverged, match=r"iter_limit=50.*Raise iter_limit"):
        transport(s.mask, device="cpu", iter_limit=50)
    assert transport(s.mask, device="cpu")["percolates"] == 1.0  # the default limit converges (~500)


def test_cli_reports_an_unconverged_solve(tmp_path, capsys, monkeypatch):
    import functools

    from microcnn.cli import main
    from microcnn.synth import properties

    monkeypatch.setattr(properties, "transport", functools.partial(properties.transport, iter_limit=50))
    out = tmp_path / "reg.h5"
    code = main(
        ["synth", "--task", "regression", "--n", "2", "--size", "32", "--seed", "0", "--out", str(out)]
    )
    assert code == 1 and "did not converge" in capsys.readouterr().err
    assert not out.exists()  # the archive is written atomically: nothing half-made is left


def test_device_defaults_to_cpu_and_refuses_unknown_or_missing():
    import torch

    from microcnn.synth.properties import solver_device

    assert solver_device() == "cpu"
    assert solver_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="Did you mean 'cuda'"):
        solver_device("cuad")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available; use 'cpu' or 'auto'"):
            solver_device("cuda")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs CUDA")
def test_cpu_and_gpu_tortuosity_agree():
    from microcnn.synth.generators import GENERATORS

    for seed in range(3):
        mask = GENERATORS.build(
            "porous", shape=(128, 128), rng=np.random.default_rng(seed), porosity=0.6
        ).mask
        cpu, gpu = transport(mask, device="cpu"), transport(mask, device="cuda")
        assert cpu["percolates"] == gpu["percolates"]
        if cpu["percolates"]:
            assert gpu["tortuosity"] == pytest.approx(cpu["tortuosity"], abs=1e-3)
            assert gpu["deff_ratio"] == pytest.approx(cpu["deff_ratio"], abs=1e-3)
