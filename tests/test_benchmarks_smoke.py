"""Fast checks of the benchmark harness: structure and ratios with expected values from outside the harness.

Timings themselves are never asserted (the CPU is shared); FLOP counts, metric formulas and report logic are.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks import bench_accuracy as acc
from benchmarks import bench_speed as speed
from benchmarks import report
from benchmarks.goals import Goal, accuracy_goals, batch_goals, speed_goals
from benchmarks.report import write_report
from benchmarks.training import SmpUnet


def _tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))


def test_conv_flops_match_the_hand_count():
    # 3x3 conv, 1 -> 4 channels, 8x8 output, no bias: 2 * (8*8 outputs) * 4 channels * 9 taps = 4608 FLOPs.
    conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    x = torch.rand(1, 1, 8, 8)
    assert speed.count_flops(lambda: conv(x)) == 2 * 8 * 8 * 4 * 9


def test_speed_section_rows_hold_the_hand_counted_flops_and_consistent_ratios():
    # Backward of a conv costs 2 forwards (grad input + grad weight) except the first layer, whose input
    # needs no gradient (1 forward): training FLOPs / forward FLOPs lies in [2, 3].
    out = speed.speed_section(side=16, batch=2, seconds=0.0, rounds=1, builders={"tiny": _tiny_net})
    assert [(r["model"], r["channels_last"]) for r in out["models"]] == [("tiny", False), ("tiny", True)]
    assert out["matmul_peak_gflops"] == max(out["matmul_rates"].values()) > 0
    assert out["timing"].startswith("the fastest of 1 rounds of 0 s")  # rounds=1, seconds=0
    first, second = 2 * 16 * 16 * 4 * 9, 2 * 16 * 16 * 2 * 4 * 9  # hand count per image
    for row in out["models"]:
        assert 2.0 <= row["train_gflop_per_img"] / row["forward_gflop_per_img"] <= 3.0
        assert row["forward_gflop_per_img"] * 1e9 == pytest.approx(first + second)
        for phase in ("forward", "train"):
            assert row[f"{phase}_img_s"] > 0
            pct = 100 * row[f"{phase}_gflops"] / out["matmul_peak_gflops"]
            assert row[f"{phase}_pct_peak"] == pytest.approx(pct)
            assert row[f"{phase}_gflops"] == pytest.approx(
                row[f"{phase}_img_s"] * row[f"{phase}_gflop_per_img"]
            )


def test_interleaved_takes_the_rounds_in_turn_and_keeps_each_fastest():
    # Two fns, 3 rounds: the calls alternate a, b, a, b, a, b after one warm-up each (a, b). a is slow
    # (0.03 s) in its first timed round only, b (0.02 s) in its last: each keeps its 0.005 s rounds.
    import time

    order: list[str] = []

    def make(key: str, slow_call: int, slow: float):
        def fn():
            order.append(key)
            time.sleep(slow if order.count(key) == slow_call else 0.005)

        return fn

    best = speed.interleaved({"a": make("a", 2, 0.03), "b": make("b", 4, 0.02)}, seconds=0.0, rounds=3)
    assert order == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert 0.005 <= best["a"] < 0.01 and 0.005 <= best["b"] < 0.01


@pytest.mark.parametrize("channels_last", [False, True])
def test_kernel_profile_rates_times_times_give_the_hand_counted_flops(channels_last):
    # conv 3x3 1 -> 4 and transposed conv 2x2 stride 2, 4 -> 2, on 2 images of 8x8 (hand count):
    # forward 2*2*64*4*9 + 2*2*64*4*2*4 FLOPs; backward: the first conv only its weight gradient (its
    # input needs none, 1 forward), the transposed conv input and weight gradients (2 forwards).
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(4, 2, 2, stride=2))
    first, second = 2 * 2 * 64 * 4 * 9, 2 * 2 * 64 * 4 * 2 * 4
    out = speed.profile_kernels(net, side=8, batch=2, channels_last=channels_last)

    def flops(row: dict, key: str) -> float:  # rate x (share x seconds) = FLOPs per call
        return row[f"{key}_gflop_s"] * 1e9 * row[f"{key}_pct"] / 100 * row["seconds"]

    fwd, train = out["forward"], out["train"]
    assert flops(fwd, "conv") == pytest.approx(first + second, rel=1e-6)
    assert flops(train, "conv") == pytest.approx(first + second, rel=1e-6)
    assert flops(train, "conv_backward") == pytest.approx(first + 2 * second, rel=1e-6)
    assert "conv_backward_pct" not in fwd
    assert 0 < train["conv_pct"] + train["conv_backward_pct"] + train["optimizer_pct"] <= 100
    assert train["optimizer_pct"] > 0
    assert "top_ops" not in train


def test_kernel_profile_ranks_the_forward_operators_by_self_time():
    # Two convolution layers: aten::convolution runs twice per forward; with every operator listed
    # (top large enough) the self-time shares add up to the whole call.
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(4, 2, 2, stride=2))
    ops = speed.profile_kernels(net, side=8, batch=2, channels_last=False, top=1000)["forward"]["top_ops"]
    assert {o["op"]: o["calls"] for o in ops}["aten::convolution"] == 2
    assert sum(o["pct"] for o in ops) == pytest.approx(100.0)
    assert [o["pct"] for o in ops] == sorted((o["pct"] for o in ops), reverse=True)
    assert len(speed.profile_kernels(net, side=8, batch=2, top=2)["forward"]["top_ops"]) == 2


def test_speed_goals_name_the_kernel_rates_that_limit_them():
    k = {"seconds": 1.0, "conv_pct": 20.0, "conv_gflop_s": 120.0, "conv_backward_pct": 60.0,
         "conv_backward_gflop_s": 75.0, "optimizer_pct": 2.0}  # fmt: skip
    results = {
        "sections": {
            "speed": {"result": {"matmul_peak_gflops": 150.0, "models": []}},
            "profile": {"result": {"kernels": {"unet (ours, default)": {"channels_last": {"train": k}}}}},
        }
    }
    goals = {g.text: g for g in speed_goals(results)}
    why = goals["CPU training ≥ 50 % of peak: unet (ours, default), channels_last"].why
    # 75 / 150 = 50 % of peak; the rest of the step: 100 - 20 - 60 - 2 = 18 %
    assert "conv backward 60.0 % of the time at 75.0 GFLOP/s (50.0 % of peak)" in why
    assert "AdamW 2.0 %; the other 18.0 %" in why
    assert goals["CPU training ≥ 50 % of peak: unet (ours, default), NCHW"].why == "no profile in this run"


def test_timed_reports_the_fastest_round_not_the_mean():
    # 0.04 s per call for the first 4 calls (an interfering process), then 0.01 s: 5 rounds of 0.02 s each
    # (one call each while slow); the fastest round is the 0.01 s calls, the mean of all calls is not.
    import time

    calls = []

    def fn():
        calls.append(None)
        time.sleep(0.04 if len(calls) <= 4 else 0.01)

    per_call = speed.timed(fn, seconds=0.1, warmup=0, rounds=5)
    assert len(calls) >= 5
    assert 0.01 <= per_call < 0.02


def test_matmul_rates_are_positive_for_both_gemm_back_ends():
    rates = speed.matmul_rates(n=64, seconds=0.0)
    assert sorted(rates) == ["mm", "onednn"] and all(math.isfinite(v) and v > 0 for v in rates.values())


def test_peer_ratios_divide_images_per_second_at_equal_layout():
    rows = [
        {"model": "unet (ours, default)", "channels_last": False, "forward_img_s": 6.0, "train_img_s": 1.0},
        {
            "model": "smp Unet resnet18 (peer)",
            "channels_last": False,
            "forward_img_s": 4.0,
            "train_img_s": 2.0,
        },
        {
            "model": "resnet18 classifier (ours)",
            "channels_last": False,
            "forward_img_s": 9.0,
            "train_img_s": 3.0,
        },
    ]
    (r,) = speed.peer_ratios(rows)
    assert (r["model"], r["forward_ratio"], r["train_ratio"]) == ("unet (ours, default)", 1.5, 0.5)


def _masks(rng: np.random.Generator, k: int = 3) -> tuple[list[np.ndarray], list[np.ndarray]]:
    truths = [rng.integers(0, k, (24, 32)).astype(np.uint8) for _ in range(2)]
    preds = [
        np.where(rng.random(t.shape) < 0.3, rng.integers(0, k, t.shape), t).astype(np.uint8) for t in truths
    ]
    return preds, truths


def test_scores_agree_with_smp_and_torchmetrics(rng):
    import segmentation_models_pytorch as smp
    from torchmetrics.classification import MulticlassJaccardIndex

    preds, truths = _masks(rng)
    s = acc.score_masks(preds, truths, class_names=["a", "b", "c"], pixel_sizes=[None, None])
    p, t = torch.from_numpy(np.stack(preds)).long(), torch.from_numpy(np.stack(truths)).long()
    onehot = lambda m: nn.functional.one_hot(m, 3).permute(0, 3, 1, 2)  # noqa: E731
    stats = smp.metrics.get_stats(onehot(p), onehot(t), mode="multilabel", threshold=0.5)
    assert s["joint_iou"] == pytest.approx(float(smp.metrics.iou_score(*stats, reduction="micro")))
    per_class = MulticlassJaccardIndex(num_classes=3, average=None)(p, t).numpy()
    assert [s["iou"][n] for n in "abc"] == pytest.approx(per_class.tolist(), abs=1e-6)
    assert s["pixel_accuracy"] == pytest.approx(float((p == t).float().mean()))


def test_fraction_error_and_size_ks_by_hand():
    true = np.zeros((10, 10), np.uint8)
    true[2:4, 2:4] = 1  # one 4-px particle: fraction 4 %
    pred = true.copy()
    pred[6:8, 6:9] = 1  # plus one 6-px particle: fraction 10 %
    s = acc.score_masks([pred], [true], class_names=["m", "p"], pixel_sizes=[None])
    assert s["fraction_error_pp_per_image"][0] == pytest.approx([6.0, 6.0])
    assert s["size_ks"]["p"]["n_pred"] == 2 and s["size_ks"]["p"]["n_true"] == 1
    # Sizes {d4, d6} vs {d4}: the empirical CDFs differ by 1/2 just above d4.
    assert s["size_ks"]["p"]["ks"] == pytest.approx(0.5)
    same = acc.score_masks([true], [true], class_names=["m", "p"], pixel_sizes=[None])
    assert same["size_ks"]["p"]["ks"] == 0.0 and same["joint_iou"] == 1.0


class _Bright(nn.Module):
    """Class 1 where the standardised image is above its mean: a threshold, so it has no scale of its own."""

    in_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-x, x], dim=1)


def _sweep(monkeypatch, pixels: np.ndarray, truth: np.ndarray) -> dict[str, list[float]]:
    from microcnn.inference.predictor import Predictor
    from microcnn.io.micrograph import Micrograph

    meta = {"task": "segmentation", "class_names": ["dark", "bright"], "model": {"name": "bright"}}
    monkeypatch.setattr(
        Predictor, "from_checkpoint", classmethod(lambda cls, w, **kw: cls([_Bright()], meta, **kw))
    )
    return acc.scale_sweep(Path("unused"), [(Micrograph(pixels), truth)], ["dark", "bright"])


def test_scale_sweep_resamples_and_maps_back_and_fine_features_do_not_survive_shrinking(monkeypatch):
    """A threshold model segments two 16-px squares exactly at 1x; resampled 0.5x or 2x and back, only pixels
    on the squares' edges can change (a ring 1 px either side: 2 x 2 x 4 x 16 = 256 of 4096 px). Single-pixel
    dots every 4 px do not survive 2x shrinking (below the sampling limit): their IoU drops at 0.5x."""
    blocks = np.full((64, 64), 0.2, np.float32)
    blocks[8:24, 8:24] = blocks[40:56, 24:40] = 0.8
    out = _sweep(monkeypatch, blocks, (blocks > 0.5).astype(np.uint8))
    assert out["factors"] == [0.5, 0.75, 1.0, 1.5, 2.0]
    at = dict(zip(out["factors"], out["joint_iou"]))
    assert at[1.0] == 1.0 and dict(zip(out["factors"], out["mean_iou"]))[1.0] == 1.0
    accuracy_floor = 1 - 256 / 4096
    assert min(out["joint_iou"]) >= accuracy_floor / (2 - accuracy_floor)  # joint IoU = a / (2 - a)
    dots = np.full((64, 64), 0.2, np.float32)
    dots[::4, ::4] = 0.8
    fine = dict(
        zip(*(_sweep(monkeypatch, dots, (dots > 0.5).astype(np.uint8))[k] for k in ("factors", "mean_iou")))
    )
    assert fine[1.0] == 1.0 and fine[0.5] < 0.8


def test_per_kind_finds_the_morphology_whose_phase_polarity_the_model_gets_backwards(monkeypatch, tmp_path):
    """Two morphologies, 2 images each: second phase bright ("islands") and second phase dark ("pores").
    A model that calls bright pixels class 1 is exact on islands (mean IoU 1) and exactly inverted on pores
    (IoU 0 for both classes); Otsu with the levels mapped by each morphology's masks is exact on both."""
    from PIL import Image

    from benchmarks.report import per_kind_lines
    from microcnn.inference.predictor import Predictor

    meta = {"task": "segmentation", "class_names": ["matrix", "second"], "model": {"name": "bright"}}
    monkeypatch.setattr(
        Predictor, "from_checkpoint", classmethod(lambda cls, w, **kw: cls([_Bright()], meta, **kw))
    )
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rows = ["file,sample_id,kind"]
    for i, kind in enumerate(["islands", "islands", "pores", "pores"]):
        mask = np.zeros((32, 32), np.uint8)
        mask[4 + i : 20 + i, 6:22] = 1
        bright = mask if kind == "islands" else 1 - mask
        Image.fromarray((40 + 160 * bright).astype(np.uint8)).save(tmp_path / "images" / f"s{i}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"s{i}.png")
        rows.append(f"images/s{i}.png,s{i},{kind}")
    (tmp_path / "samples.csv").write_text("\n".join(rows) + "\n")
    out = acc.per_kind(Path("unused"), tmp_path)
    assert out == {
        "islands": {"n": 2, "mean_iou": 1.0, "otsu_mean_iou": 1.0},
        "pores": {"n": 2, "mean_iou": 0.0, "otsu_mean_iou": 1.0},
    }
    text = "\n".join(per_kind_lines("seg", out))
    assert (
        "| pores | 2 | 0.000 | 1.000 | **below Otsu** |" in text
        and "| islands | 2 | 1.000 | 1.000 |  |" in text
    )


def test_the_ood_goal_names_the_scale_where_the_model_reads_best():
    from benchmarks.goals import _scale_why
    from benchmarks.report import scale_lines

    def run(joint):
        return {"ood_scales": {"factors": [0.5, 0.75, 1.0, 1.5, 2.0], "joint_iou": joint}}

    two = {
        "ours": run([0.70, 0.78, 0.74, 0.60, 0.50]),
        "repeats": {"ours": [run([0.72, 0.80, 0.76, 0.6, 0.5])]},
    }
    text = _scale_why(two, "ood")
    # mean over the 2 seeds: 0.79 at 0.75x against 0.75 at 1x
    assert "resampled by 0.75× before prediction these images score 0.790 joint IoU, against 0.750" in text
    assert "made smaller in px" in text
    assert (
        _scale_why({"ours": run([0.70, 0.74, 0.745, 0.6, 0.5])}, "ood") == ""
    )  # 1x within 0.005 of the best
    assert _scale_why({"ours": run([0.70, 0.72, 0.70, 0.74, 0.5])}, "ood").count("made larger in px") == 1
    assert _scale_why({"ours": {}}, "ood") == ""  # results without a sweep
    assert "| 0.75× | 0.790 |" in "\n".join(scale_lines(two)) and scale_lines({"ours": {}}) == []


def test_multi_otsu_levels_map_to_the_majority_true_class(rng):
    from microcnn.io.micrograph import Micrograph

    levels = np.array([0.1, 0.4, 0.7, 0.95], np.float32)
    classes = np.array([2, 0, 3, 1], np.uint8)  # level i is true class classes[i]
    pairs = []
    for _ in range(2):
        idx = rng.integers(0, 4, (32, 32))
        pixels = np.clip(levels[idx] + rng.normal(0, 0.02, idx.shape), 0, 1).astype(
            np.float32
        )  # 4 clear modes
        image = Micrograph(pixels, pixel_size_um=None, source_dtype="float32", bit_depth=32, meta={})
        pairs.append((image, classes[idx]))
    preds = acc.otsu_masks(pairs[:1], [pairs[1][0]], 4)
    assert (preds[0] == pairs[1][1]).mean() > 0.99  # noise tails may cross a threshold: a few pixels


def test_peer_wrapper_pads_and_matches_smp_on_multiples_of_32():
    torch.manual_seed(0)
    peer = SmpUnet(in_channels=1, num_classes=3).eval()
    with torch.inference_mode():
        assert peer(torch.rand(1, 1, 50, 70)).shape == (1, 3, 50, 70)
        x = torch.rand(1, 1, 64, 64)
        torch.testing.assert_close(peer(x), peer.net(x))


def test_shared_splits_match_source_md(uhcs_dir, nasa_dir):
    folds = acc.uhcs_folds(uhcs_dir)
    stems = [s for f in folds for s in f]
    assert [len(f) for f in folds] == [4] * 6 and len(set(stems)) == 24  # SOURCE.md: 6 folds of 4 images
    assert "uhcs0075" in stems and all((uhcs_dir / "images" / f"{s}.tif").exists() for s in stems)
    from microcnn.data.splits import load_split

    committed = load_split(
        Path(__file__).parents[1] / "configs/bench/uhcs_decost2019_folds.json"
    )  # the folds for `microcnn cv`
    assert [sorted(f["val"]) for f in committed] == [sorted(f) for f in folds]
    assert all(sorted(f["train"] + f["val"]) == sorted(stems) for f in committed)
    roles = acc.nasa_split(nasa_dir, "Super1")
    assert {r: len(v) for r, v in roles.items()} == {"train": 10, "val": 4, "test": 4}
    assert len(acc.nasa_split(nasa_dir, "Super2")["different_test"]) == 5


KEPT = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@pytest.mark.skipif(not list(KEPT.glob("*.json")), reason="no raw results kept in benchmarks/results yet")
def test_kept_results_merge_and_render(tmp_path):
    """The raw results kept with the repository parse, name no absolute path of the machine that ran them,
    hold no failed section, and merge in name order and render (as `make bench-report` does)."""
    import json

    from benchmarks.run import merge_results

    files = sorted(KEPT.glob("*.json"))
    parts = [json.loads(f.read_text()) for f in files]
    for f, part in zip(files, parts):
        assert set(part) >= {"environment", "sections"}, f.name
        absolute = [s for s in _strings(part) if s.startswith("/") or s[1:3] == ":\\"]
        assert not absolute, f"{f.name} holds absolute paths: {absolute[:3]}"
    merged = merge_results(parts)
    assert merged["environment"]["command"].count(" ; then ") == len(parts) - 1
    write_report(merged, tmp_path / "b.md")
    assert (tmp_path / "b.md").read_text().startswith("# Benchmarks")
    failed = {n: s["result"]["error"] for n, s in merged["sections"].items() if "error" in s["result"]}
    assert not failed, f"kept sections that failed: {failed}"


def test_goals_verdicts_and_gaps():
    assert Goal("g", 0.90, 0.95).met is False and "0.050" in Goal("g", 0.90, 0.95).row()[3]
    assert Goal("m", 1.05, 1.10, lower=True).met is True
    assert Goal("n", None, 1.0).met is None and Goal("n", math.nan, 1.0).row()[1].startswith("not measured")


def test_report_from_results_says_what_was_not_measured(tmp_path):
    results = {
        "environment": {"command": "python -m benchmarks.run --only batch,gpu", "date": "d", "machine": "m",
                        "torch_threads": 2, "cuda": "no GPU in this run", "versions": {"torch": "x"}},
        "sections": {
            "gpu": {"result": {"skipped": "no GPU in this run"}, "seconds": 0.0, "load_before": [1, 1, 1],
                    "load_after": [1, 1, 1]},
            "batch": {"result": {"side": 8, "runs": [{"images": 2, "img_s": 1.0, "peak_rss_mb": 100.0}],
                                 "forward_img_s_batched": 4.0, "forward_img_s_batch1": 2.0,
                                 "ratio_vs_batched": 0.25, "ratio_vs_batch1": 0.5, "peak_rss_ratio": 1.2,
                                 "steady_img_s": 3.0, "steady_ratio_vs_batched": 0.75, "startup_s": 1.5},
                      "seconds": 1.0, "load_before": [1, 1, 1], "load_after": [1, 1, 1]},
        },
    }  # fmt: skip
    path = tmp_path / "b.md"
    write_report(results, path)
    text = path.read_text()
    assert "no GPU in this run" in text and "*nasa: not run" in text
    goals = {g.text: g for g in speed_goals(results) + accuracy_goals(results)}
    batch = goals["Batch HDF5 ≥ 90 % of pure forward throughput (steady state; the fastest forward batch)"]
    assert batch.value == 75.0 and batch.met is False and "1.5 s once" in batch.why
    assert "**75.0 %** of the fastest bare forward (32 at a time)" in text  # 3 / 4 img/s
    assert goals["Memory flat in archive size (peak RSS ratio largest/smallest ≤ 1.10)"].met is False


def test_steady_state_rate_cancels_the_fixed_cost_of_a_job():
    # t = 2 s + n / 500 img/s: 200 images in 2.4 s, 2,000 in 6 s
    runs = [{"images": 200, "img_s": 200 / 2.4}, {"images": 2000, "img_s": 2000 / 6.0}]
    rate, startup = speed.steady_state(runs)
    assert rate == pytest.approx(500.0) and startup == pytest.approx(2.0)
    assert speed.steady_state(runs[:1]) == (None, None)
    # the measured toy run of 2026-12-02: 200 images in 8.85 s, 2,000 in 5.70 s (the first job's fixed cost
    # was 3 s larger): a rate would be negative, so none is read off
    noisy = [{"images": 200, "img_s": 22.6}, {"images": 2000, "img_s": 350.7}]
    assert speed.steady_state(noisy) == (None, None)


def test_batch_goal_compares_with_the_fastest_bare_forward_of_the_section():
    # the phase segmenter on 256² images, 2026-12-02 before CPU_BATCH_PIXELS: 32 at a time 21.9 img/s, one
    # at a time 35.4 img/s; a job at 25 img/s in steady state is 25 / 35.4 = 70.6 % of the fastest forward,
    # not 25 / 21.9 = 114 % of the batched one
    b = {"forward_img_s_batched": 21.9, "forward_img_s_batch1": 35.4, "steady_img_s": 25.0, "startup_s": 1.0,
         "runs": [], "peak_rss_ratio": 1.0}  # fmt: skip
    (goal, _) = batch_goals({"sections": {"batch": {"result": b}}})
    assert goal.value == pytest.approx(100 * 25 / 35.4) and "(1 image at a time) 28.25 ms" in goal.why
    # results since: the job's own batch (2 of 256²) timed too, and here the fastest
    b2 = {**b, "forward_img_s_job": 36.5, "job_batch": 2, "chunk": 32}
    (goal, _) = batch_goals({"sections": {"batch": {"result": b2}}})
    assert goal.value == pytest.approx(100 * 25 / 36.5) and "(2 at a time, as the job)" in goal.why


def test_forward_sweep_table_bolds_the_fastest_batch_of_each_side_and_names_the_cpu_budget():
    sweep = {"model": "phase_segmenter", "cpu_batch_pixels": 2**17, "rows": [
        {"side": 64, "img_s": {"1": 208.4, "16": 508.5, "32": 538.5}},
        {"side": 256, "img_s": {"1": 32.0, "2": 33.4, "32": 22.6}}]}  # fmt: skip
    text = "\n".join(report._sweep_lines(sweep))
    assert "| 64² | 208.4 | – | 508.5 | **538.5** |" in text
    assert "| 256² | 32.0 | **33.4** | – | 22.6 |" in text
    assert "131,072 px, gives batches of 32 of 64², 2 of 256²" in text  # 2^17 / 64² = 32, 2^17 / 256² = 2


def test_report_says_when_the_steady_state_rate_cannot_be_read_off(tmp_path):
    runs = [{"images": 200, "img_s": 22.6, "peak_rss_mb": 1021.0}, {"images": 2000, "img_s": 350.7,
            "peak_rss_mb": 1025.0}]  # fmt: skip
    b = {"side": 64, "runs": runs, "forward_img_s_batched": 1073.3, "forward_img_s_batch1": 416.5,
         "ratio_vs_batched": 350.7 / 1073.3, "ratio_vs_batch1": 350.7 / 416.5, "peak_rss_ratio": 1025 / 1021,
         "steady_img_s": None, "steady_ratio_vs_batched": None, "startup_s": None}  # fmt: skip
    text = "\n".join(report.batch_lines({"sections": {"batch": {"result": {**b, "overhead": b}}}}))
    assert text.count("Steady state: not measurable in this run: the 2000-image job took no longer") == 2
    assert "of the batched forward; fixed cost" not in text  # no (negative) rate printed


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_gpu_section_says_no_gpu():
    assert speed.bench_gpu(side=32, batch=1, seconds=0.0) == {"skipped": "no GPU in this run"}


def test_merging_runs_joins_uhcs_folds_and_replaces_other_sections():
    from benchmarks.run import merge_results

    def run(command: str, sections: dict) -> dict:
        return {"environment": {"command": command}, "sections": sections}

    fold = {"ours": {"test": {"mean_iou": 0.5}}}
    first = run("a", {"uhcs": {"result": {"folds": {"0": fold, "1": fold}}, "seconds": 10.0}, "io": {"x": 1}})
    second = run("b", {"uhcs": {"result": {"folds": {"1": {}, "2": fold}}, "seconds": 5.0}, "io": {"x": 2}})
    merged = merge_results([first, second])
    uhcs = merged["sections"]["uhcs"]
    assert sorted(uhcs["result"]["folds"]) == ["0", "1", "2"] and uhcs["result"]["folds"]["1"] == {}
    assert uhcs["seconds"] == 15.0 and merged["sections"]["io"] == {"x": 2, "run": "2"}
    assert merged["environment"]["command"] == "a ; then b"
    first["environment"]["date"] = "2026-12-01 14:00 UTC"
    second["environment"]["date"] = "2026-12-01 07:45 UTC"
    dated = merge_results([first, second])["environment"]["date"]
    assert dated == "2026-12-01 07:45 UTC to 2026-12-01 14:00 UTC (2 runs)"
    # each section names the run(s) it comes from, and the machines of all runs are named
    first["environment"]["machine"], second["environment"]["machine"] = "cpu A", "cpu B"
    third = run("c", {"io": {"x": 3}, "speed": {"y": 1}})
    third["environment"]["machine"] = "cpu A"
    merged = merge_results([first, second, third])
    assert merged["sections"]["uhcs"]["run"] == "1+2" and merged["sections"]["io"]["run"] == "3"
    assert merged["environment"]["machine"] == "cpu A | cpu B"
    assert [r["machine"] for r in merged["environment"]["runs"]] == ["cpu A", "cpu B", "cpu A"]
    assert "run" not in merge_results([first])["sections"]["io"]  # one run: nothing to tell apart


def test_report_of_merged_runs_lists_each_run_and_the_run_of_each_section(tmp_path):
    from benchmarks.run import merge_results

    def run(command: str, machine: str) -> dict:
        env = {
            "command": command,
            "date": f"{command} date",
            "machine": machine,
            "torch_threads": 2,
            "cuda": "no GPU in this run",
            "versions": {"torch": "x"},
        }
        gpu = {
            "result": {"skipped": "no GPU in this run"},
            "seconds": 0.0,
            "load_before": [1, 1, 1],
            "load_after": [1, 1, 1],
        }
        return {"environment": env, "sections": {"gpu": gpu}}  # fmt: skip

    path = tmp_path / "b.md"
    write_report(merge_results([run("python a", "cpu A"), run("python b", "cpu B")]), path)
    text = path.read_text()
    assert "- Run 1: `python a` (python a date; cpu A)" in text and "- Run 2: `python b`" in text
    assert "| section | run | seconds |" in text and "| gpu | 2 | 0 |" in text


def test_merging_runs_joins_new_seeds_of_the_same_models_and_replaces_otherwise():
    from benchmarks.goals import seed_mean
    from benchmarks.run import merge_results

    def run(who: str, seed: int, miou: float, model: str = "resnet_unet") -> dict:
        name = model if who == "ours" else "smp_unet_resnet18"
        return {"model": {"name": name}, "seed": seed, "max_minutes": 8.0, "test": {"mean_iou": miou}}

    def results(seeds: list[int], mious: list[float], model: str = "resnet_unet") -> dict:
        ours = [run("ours", s, m, model) for s, m in zip(seeds, mious, strict=True)]
        peer = [run("peer", s, m - 0.01) for s, m in zip(seeds, mious, strict=True)]
        section = {"benchmark": "Super1", "ours": ours[0], "peer": peer[0]}
        if len(seeds) > 1:
            section["repeats"] = {"ours": ours[1:], "peer": peer[1:]}
        return {"environment": {"command": "x"}, "sections": {"nasa": {"result": section, "seconds": 10.0}}}

    joined = merge_results([results([0, 1], [0.88, 0.90]), results([2], [0.92])])["sections"]["nasa"]
    assert [r["seed"] for r in joined["result"]["repeats"]["ours"]] == [1, 2]
    assert [r["seed"] for r in joined["result"]["repeats"]["peer"]] == [1, 2]
    assert seed_mean(joined["result"], "ours", "test", "mean_iou") == pytest.approx(
        0.90
    )  # (88 + 90 + 92) / 3
    assert joined["seconds"] == 20.0
    # a seed run twice, or another model: the later run replaces the earlier one
    again = merge_results([results([0, 1], [0.88, 0.90]), results([1], [0.5])])["sections"]["nasa"]
    assert again["result"]["ours"]["test"]["mean_iou"] == 0.5 and "repeats" not in again["result"]
    other = merge_results([results([0], [0.88]), results([1], [0.7], model="unet")])["sections"]["nasa"]
    assert other["result"]["ours"]["model"] == {"name": "unet"} and "repeats" not in other["result"]


def test_super3_epochs_hold_as_many_crops_as_super1_epochs():
    """Super1: 10 training images x 8 crops (configs/nasa_super1.yaml) = 80 crops per epoch; Super3 has one
    image, so 80 crops of it, and early stopping's patience counts the same work on both."""
    assert acc._crops_per_epoch_as_super1(1) == ["data.patches_per_image=80"]
    assert acc._crops_per_epoch_as_super1(3) == ["data.patches_per_image=27"]  # ceil(80 / 3)
    assert acc._crops_per_epoch_as_super1(10) == []


def test_uhcs_fold_summary_is_the_mean_and_sample_std():
    from benchmarks.report import fold_summary

    def scored(miou, acc):
        return {"test": {"mean_iou": miou, "pixel_accuracy": acc}}

    folds = {"0": {"ours": scored(0.60, 0.84), "peer": scored(0.5, 0.8)}, "1": {"ours": scored(0.70, 0.90)}}
    # ours: mean (60 + 70) / 2 = 65, sample std |70 - 60| / sqrt(2) = 7.07; one peer fold: no spread
    assert fold_summary(folds) == (
        "Over the 2 fold(s) run (mean ± sample std): ours mean IoU 65.0 ± 7.1, pixel acc 87.0 ± 4.2 %; "
        "peer mean IoU 50.0, pixel acc 80.0 %."
    )


def test_a_narrow_miss_shows_its_gap_not_zero():
    row = Goal("training ≥ 50 %", 49.98, 50.0, unit=" %").row()  # 49.98 % reads 50.0 at one decimal
    assert row[2] == "**missed**" and row[3] == "short by 0.02 pp"


def test_tta_scores_get_their_own_rows_and_goals(tmp_path):
    """A model scored plain and with TTA: the goals marked (TTA) read the *_tta scores, the others the plain
    ones; the report shows both rows, and the UHCS summary averages the TTA folds on their own."""
    from benchmarks.report import fold_summary

    def scored(miou, acc):
        return {"mean_iou": miou, "pixel_accuracy": acc, "joint_iou": acc / (2 - acc), "iou": {}}

    nasa = {
        who: {"test": scored(0.88, 0.976), "test_tta": scored(0.91, 0.98), "ood": scored(0.6, 0.8),
              "ood_tta": scored(0.62, 0.86)}
        for who in ("ours", "peer")
    }  # fmt: skip
    nasa["peer"]["test_tta"] = scored(0.92, 0.98)
    results = {"sections": {"nasa": {"result": nasa}}}
    goals = {g.text: g for g in accuracy_goals(results)}
    assert goals["NASA Super1 per-class mean IoU ≥ 0.90"].value == 0.88
    assert goals["NASA Super1 per-class mean IoU ≥ 0.90 (TTA)"].met is True
    ood = goals["Out-of-distribution joint IoU ≥ 0.75 (Super1 model, 5 images) (TTA)"]
    assert ood.value == pytest.approx(0.86 / 1.14) and ood.met is True
    better = goals["Better than the peer (mean IoU, ours − peer): NASA Super1 test (TTA)"]
    assert better.value == pytest.approx(-1.0) and better.met is False
    folds = {"0": {"ours": {"test": scored(0.6, 0.8), "test_tta": scored(0.7, 0.9)}}}
    assert fold_summary(folds).endswith("ours mean IoU 60.0, pixel acc 80.0 %; ours (TTA) mean IoU 70.0, "
                                        "pixel acc 90.0 %.")  # fmt: skip
    from benchmarks.report import nasa_lines

    nasa_result = {**nasa, "split": {"train": [1], "val": [1], "test": [1], "ood": ["x"]}}
    text = "\n".join(nasa_lines({"sections": {"nasa": {"result": nasa_result}}}))
    assert "| ours test (TTA) |" in text and "| peer ood (TTA) |" in text


def test_rescore_scores_each_saved_model_again_and_keeps_its_training_facts(tmp_path, monkeypatch):
    """--rescore: each model's run_dir/model.safetensors is scored on its section's sets (UHCS: the fold's
    images), old scores are replaced, training facts kept; a model that is gone is named, not skipped."""
    calls = []

    def fake_score(weights, sets, names, scales=()):
        calls.append((weights, {k: len(v) for k, v in sets.items()}))
        return {"test": {"mean_iou": 0.5}, "test_tta": {"mean_iou": 0.6}}

    monkeypatch.setattr(acc, "score_weights", fake_score)
    monkeypatch.setattr(acc, "load_pair", lambda root, stem: (stem, None))
    monkeypatch.setattr(acc, "uhcs_folds", lambda root: [["a", "b"], ["c"]])
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "model.safetensors").write_bytes(b"x")
    fold = {
        "ours": {"run_dir": str(tmp_path / "ours"), "train_seconds": 480.0, "test": {"mean_iou": 0.1}},
        "peer": {"run_dir": str(tmp_path / "gone"), "train_seconds": 470.0, "test": {"mean_iou": 0.2}},
        "multi_otsu": {"test": {"mean_iou": 0.05}},
    }
    out = acc.rescore("uhcs", {"folds": {"1": fold}})["folds"]["1"]
    assert calls == [(tmp_path / "ours" / "model.safetensors", {"test": 1})]
    assert out["ours"]["test_tta"] == {"mean_iou": 0.6} and out["ours"]["train_seconds"] == 480.0
    assert out["ours"]["rescored"] is True and out["multi_otsu"] == fold["multi_otsu"]
    assert "test" not in out["peer"] and "gone/model.safetensors not found" in out["peer"]["error"]


def test_rescore_keeps_the_training_commands_so_their_overrides_reach_the_reproduce_lines(monkeypatch):
    from benchmarks import run as bench_run
    from benchmarks.report import _overrides

    monkeypatch.setattr(acc, "rescore", lambda name, result: result)
    trained = "python -m benchmarks.run --only uhcs --uhcs-folds 0 --set data.patch_size=128 --out runs/b3"
    part = {"environment": {"command": trained, "budget_minutes": 8.0},
            "sections": {"uhcs": {"result": {"folds": {"0": {}}}, "seconds": 1.0}}}  # fmt: skip
    out = bench_run.rescore_results([part])
    assert out["environment"]["command"].endswith(f" # re-scoring the models trained by: {trained}")
    assert _overrides(out["environment"]["command"]) == " --set data.patch_size=128"
    assert out["environment"]["budget_minutes"] == 8.0 and "uhcs" in out["sections"]


def test_fold_speedup_rows_time_both_paths_of_each_model():
    from benchmarks.report import fold_lines

    rows = speed.fold_speedup(side=32, batch=1, rounds=1, names=["unet (ours, default)"])
    assert [r["model"] for r in rows] == ["unet (ours, default)"]
    assert rows[0]["speedup"] == pytest.approx(rows[0]["plain_s"] / rows[0]["folded_s"])
    text = "\n".join(fold_lines([{"model": "m", "plain_s": 0.5, "folded_s": 0.4, "speedup": 1.25}]))
    assert "| m | 0.500 | 0.400 | 1.25 |" in text


def test_seeds_train_each_model_once_per_seed_and_goals_use_the_mean(tmp_path, monkeypatch):
    """--seeds 0 1: ours and the peer trained with seed=0 and seed=1 in folders of their own; "ours"/"peer"
    hold seed 0, "repeats" seed 1; the goals read the mean over the seeds; the report shows each seed and
    mean ± sample sd."""
    from benchmarks import training
    from benchmarks.report import nasa_lines

    trained = []
    miou = {("ours", 0): 0.88, ("ours", 1): 0.90, ("peer", 0): 0.89, ("peer", 1): 0.88}

    def fake_train(cfg, *, run_dir, minutes, split):
        trained.append((run_dir.name, cfg.seed, cfg.model["name"]))
        return training.BudgetedRun(run_dir, run_dir / "model.safetensors", 9, 9, 1.0, "max_minutes")

    def fake_score(run, sets, names, scales=()):
        who = "peer" if run.run_dir.name.split("-")[1] == "peer" else "ours"
        scores = {"mean_iou": miou[who, int(run.run_dir.name[-1])], "pixel_accuracy": 0.97, "iou": {}}
        return {"train_seconds": 1.0, "test": scores}

    monkeypatch.setattr(acc, "train_budgeted", fake_train)
    monkeypatch.setattr(acc, "score_run", fake_score)
    out = acc._ours_and_peer(acc.NASA_CONFIG, split={}, sets={}, minutes=1.0, out_dir=tmp_path, tag="super1",
                             seeds=[0, 1])  # fmt: skip
    peer = training.PEER_NAME
    assert trained == [("super1-ours-seed0", 0, "resnet_unet"), ("super1-peer-seed0", 0, peer),
                       ("super1-ours-seed1", 1, "resnet_unet"), ("super1-peer-seed1", 1, peer)]  # fmt: skip
    assert out["ours"]["seed"] == 0 and [r["seed"] for r in out["repeats"]["ours"]] == [1]
    goals = {g.text: g for g in accuracy_goals({"sections": {"nasa": {"result": out}}})}
    assert goals["NASA Super1 per-class mean IoU ≥ 0.90 (mean of 2 seeds)"].value == pytest.approx(0.89)
    # ours (88 + 90) / 2 = 89, the peer (89 + 88) / 2 = 88.5: +0.5 pp
    better = goals["Better than the peer (mean IoU, ours − peer): NASA Super1 test (mean of 2 seeds)"]
    assert better.value == pytest.approx(0.5) and better.met is True
    # spread over the seeds, in the measured column: ours sd(0.88, 0.90) = 0.02 / sqrt(2) = 0.014;
    # ours − peer -1 and +2 pp: sd 3 / sqrt(2) = 2.1 pp
    assert (
        goals["NASA Super1 per-class mean IoU ≥ 0.90 (mean of 2 seeds)"].row()[1]
        == "0.890 (sd 0.014 over the seeds)"
    )
    assert better.row()[1] == "0.5 pp (sd 2.1 over the seeds)"
    split = {"train": [1], "val": [1], "test": [1], "ood": ["x"]}
    text = "\n".join(nasa_lines({"sections": {"nasa": {"result": {**out, "split": split}}}}))
    # differences -1 and +2 pp: mean 0.5, sample sd sqrt(((-1.5)^2 + 1.5^2) / 1) = 2.1
    assert "| test | ours − peer | -1.0 | 2.0 | 0.5 ± 2.1 |" in text
    assert "| test | ours | 88.0 | 90.0 | 89.0 ± 1.4 |" in text
    assert "- ours seed 1 (`resnet_unet` {encoder: resnet18, upsample: nearest, head_kernel: 3})" in text


def test_a_missed_peer_comparison_says_per_seed_by_class_and_epochs_why():
    def run(miou, iou_a, iou_b, epochs):
        return {"epochs_done": epochs, "ood": {"mean_iou": miou, "iou": {"a": iou_a, "b": iou_b}}}

    # seed 0: ours 0.50 vs 0.53 (-3.0 pp), seed 1: 0.52 vs 0.52 (0.0);
    # class b: (0.20 - 0.30 + 0.25 - 0.27) / 2 = -6.0 pp, class a: (0.80 - 0.76 + 0.79 - 0.77) / 2 = +3.0 pp
    section = {
        "ours": run(0.50, 0.80, 0.20, 12),
        "peer": run(0.53, 0.76, 0.30, 11),
        "repeats": {"ours": [run(0.52, 0.79, 0.25, 13)], "peer": [run(0.52, 0.77, 0.27, 10)]},
    }
    goals = {g.text: g for g in accuracy_goals({"sections": {"super3": {"result": section}}})}
    goal = goals["Better than the peer (mean IoU, ours − peer): NASA OOD (Super3 model) (mean of 2 seeds)"]
    assert goal.value == pytest.approx(-1.5) and goal.met is False
    assert goal.why == (
        "ours − peer per seed: -3.0, 0.0 pp; the largest class deficit: b (-6.0 pp IoU, mean over the "
        "seeds); epochs in the same budget, ours 12/13 vs the peer 11/10"
    )
    assert goal.row()[-1] == goal.why  # shown in the table because it is missed


def test_batch_benchmark_runs_its_jobs_and_times_the_forward_at_the_jobs_own_batch(tmp_path):
    """A tiny run of the batch section's code (toy U-Net, 4 and 8 images of 32², 2 fresh jobs each)."""
    b = speed.bench_batch_h5(sizes=(4, 8), side=32, seconds=0.05, chunk=8, repeats=2)
    # 2^17 / 32² = 128 images would fit a CPU pass; the chunk of 8 is what predict_many gets
    assert b["job_batch"] == speed.job_batch(32, 8) == 8 and speed.job_batch(256, 32) == 2
    assert [r["images"] for r in b["runs"]] == [4, 8]
    assert all(r["img_s"] > 0 and r["peak_rss_mb"] > 50 for r in b["runs"])
    rates = [b["forward_img_s_batch1"], b["forward_img_s_batched"], b["forward_img_s_job"]]
    assert report.fastest_forward(b)[0] == max(rates) > 0
    from benchmarks import bench_batch

    weights, _ = bench_batch.make_inputs(tmp_path, [1], 16)
    sweep = speed.forward_by_batch(
        weights, sides=(16, 64), batches=(1, 2, 4), seconds=0.02, max_pixels=2 * 64**2
    )
    assert [r["side"] for r in sweep["rows"]] == [16, 64]
    assert list(sweep["rows"][1]["img_s"]) == ["1", "2"]  # 4 x 64² is over the 2 x 64² px given
    assert all(v > 0 for r in sweep["rows"] for v in r["img_s"].values())
