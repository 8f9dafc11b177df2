"""Segmentation models: any input size (pad to the stride, crop back), every Up mode."""

from __future__ import annotations

import pytest
import torch

from microcnn.models import build_model
from microcnn.models.blocks import UP_MODES


@pytest.mark.parametrize("mode", UP_MODES)
@pytest.mark.parametrize("name", ["unet", "segnet"])
def test_odd_sizes_give_logits_of_the_input_size(name, mode):
    net = build_model(name, num_classes=3, depth=3, base_channels=2, upsample=mode).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 250, 333))
    assert out.shape == (1, 3, 250, 333)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "kwargs"), [("fcn", {"base_channels": 2}), ("resnet_unet", {})])
def test_other_segmenters_keep_odd_sizes(name, kwargs):
    net = build_model(name, num_classes=3, **kwargs).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 1, 65, 97)).shape == (1, 3, 65, 97)


def test_crop_keeps_the_image_in_place():
    # a 1-level U-Net with zero padding: the logits of a 9×9 image equal those of the same image
    # zero-padded to 10×10 by hand, cropped back (padding is at the bottom/right only)
    torch.manual_seed(0)
    net = build_model("unet", depth=1, base_channels=2, norm="none", pad_mode="zeros").eval()
    x = torch.rand(1, 1, 9, 9)
    padded = torch.zeros(1, 1, 10, 10)
    padded[..., :9, :9] = x
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(padded)[..., :9, :9])


def test_depth_sets_stride_and_minimum():
    net = build_model("unet", depth=3, base_channels=2)
    assert net.output_stride == 8 and net.min_input_size == 8
    with pytest.raises(ValueError, match=r"at least 8×8 px; got 7×40.*shallower"):
        net(torch.zeros(1, 1, 7, 40))


def test_resnet_unet_refuses_unpool_with_the_choices():
    with pytest.raises(
        ValueError, match=r"Unknown ResNet-U-Net upsample mode 'unpool'\..*Available: bilinear"
    ):
        build_model("resnet_unet", upsample="unpool")


def test_widths_length_is_checked():
    with pytest.raises(ValueError, match=r"widths needs depth \+ 1 = 3 entries for depth 2.*got 2"):
        build_model("unet", depth=2, widths=[4, 8])
    # SegNet and FCN have one width per pooling stage: depth of them, and the message says so
    with pytest.raises(ValueError, match=r"widths needs depth = 2 entries for depth 2.*got 3"):
        build_model("segnet", depth=2, widths=[4, 8, 16])
    with pytest.raises(ValueError, match=r"widths needs depth = 3 entries for depth 3.*got 2"):
        build_model("fcn", depth=3, widths=[4, 8])


def test_segnet_of_depth_one_has_one_stage_and_stride_two():
    net = build_model("segnet", depth=1, base_channels=4, num_classes=3).eval()
    assert net.output_stride == 2 and len(net.enc) == 1
    assert net.enc[0][0][0].out_channels == 4  # base_channels · 2^0
    with torch.no_grad():
        assert net(torch.rand(1, 1, 7, 9)).shape == (1, 3, 7, 9)


@pytest.mark.parametrize(("name", "depth"), [("unet", 0), ("segnet", 0), ("segnet", -1)])
def test_depth_below_one_is_refused_with_the_given_depth(name, depth):
    with pytest.raises(ValueError, match=rf"depth must be >= 1; got {depth}\."):
        build_model(name, depth=depth)


def test_fcn_depth_rule_is_its_own():
    with pytest.raises(ValueError, match=r"FCN needs depth >= 3.*got 2"):
        build_model("fcn", depth=2)


def test_resnet_unet_without_projection_and_a_3x3_head_is_smps_unet():
    """project_up=False, head_kernel=3: the decoder of segmentation_models_pytorch's Unet (all channels
    upsampled, 3×3 head): the same number of parameters and FLOPs as smp's own model; the default projects
    to the decoder width first and has fewer of both."""
    smp = pytest.importorskip("segmentation_models_pytorch")
    from torch.utils.flop_counter import FlopCounterMode

    theirs = smp.Unet("resnet18", encoder_weights=None, in_channels=1, classes=3).eval()
    ours = build_model("resnet_unet", num_classes=3, upsample="nearest", project_up=False, head_kernel=3)
    default = build_model("resnet_unet", num_classes=3, upsample="nearest").eval()

    def size(net):
        return sum(p.numel() for p in net.parameters())

    def flops(net):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = net.eval()(torch.rand(1, 1, 64, 64))
        assert out.shape == (1, 3, 64, 64)
        return counter.get_total_flops()

    assert size(ours) == size(theirs) and flops(ours) == flops(theirs)
    assert size(default) < size(theirs) and flops(default) < flops(theirs)


def test_resnet_unet_refuses_project_up_false_with_a_learned_upsampling_and_even_heads():
    with pytest.raises(
        ValueError, match=r"project_up=False needs upsample 'nearest' or 'bilinear'.*'transpose'"
    ):
        build_model("resnet_unet", upsample="transpose", project_up=False)
    with pytest.raises(ValueError, match=r"head_kernel must be an odd side >= 1.*got 2"):
        build_model("resnet_unet", head_kernel=2)


def test_up_without_projection_only_interpolates_and_refuses_a_channel_change():
    from microcnn.models.blocks import Up

    x = torch.rand(1, 4, 3, 5)
    torch.testing.assert_close(
        Up(4, 4, mode="nearest", project=False)(x), x.repeat_interleave(2, -1).repeat_interleave(2, -2)
    )
    with pytest.raises(
        ValueError, match=r"Up\(project=False\) only interpolates.*'nearest', 4 -> 8 channels"
    ):
        Up(4, 8, mode="nearest", project=False)
