"""The registry: names by task, building from a name or a mapping, errors with "did you mean"."""

from __future__ import annotations

import pytest

from microcnn.errors import ConfigError
from microcnn.models import accepted_kwargs, build_model, list_models

EXPECTED = {
    "classification": {
        "lenet5", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "googlenet",
        "resnet18", "resnet34", "resnet50", "tinyvgg",
    },
    "segmentation": {"unet", "segnet", "fcn", "resnet_unet"},
    "regression": {"regressor"},
}  # fmt: skip


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_models_by_task(task):
    assert set(list_models(task)) == EXPECTED[task]


def test_all_models_is_the_union():
    assert set(list_models()) == set().union(*EXPECTED.values())


def test_mapping_and_keywords_build_the_same_model():
    a = build_model({"name": "unet", "depth": 2, "base_channels": 4, "num_classes": 3})
    b = build_model("unet", depth=2, base_channels=4, num_classes=3)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    c = build_model({"name": "unet", "depth": 2, "base_channels": 4}, base_channels=8)
    assert c.head.in_channels == 8  # keyword arguments override the mapping


def test_unknown_name_suggests_and_lists():
    with pytest.raises(ConfigError, match=r"Unknown model 'unte'\. Did you mean 'unet'\? Available: alexnet"):
        build_model("unte")


def test_unknown_argument_names_key_suggestion_and_accepted():
    with pytest.raises(
        ConfigError, match=r"Unknown argument 'dpth' for model 'unet'\. Did you mean 'depth'\?"
    ):
        build_model("unet", dpth=3)
    with pytest.raises(ValueError, match="Accepted: in_channels, num_classes, depth"):
        build_model({"name": "unet", "dpth": 3})


def test_mapping_without_name():
    with pytest.raises(ConfigError, match="needs a 'name' key"):
        build_model({"depth": 3})


def test_unknown_task():
    with pytest.raises(ValueError, match="Did you mean 'segmentation'"):
        list_models("segmentaton")


def test_bad_choice_inside_a_model_suggests():
    with pytest.raises(ValueError, match="Did you mean 'bilinear'"):
        build_model("unet", upsample="bilinar")


@pytest.mark.parametrize("name", sorted(set().union(*EXPECTED.values())))
def test_every_builder_takes_in_channels(name):
    assert "in_channels" in accepted_kwargs(name)


def test_variant_names_fix_their_depth():
    assert "depth" not in accepted_kwargs("vgg16") and "depth" not in accepted_kwargs("resnet18")
    with pytest.raises(ConfigError, match="Unknown argument 'depth' for model 'vgg16'"):
        build_model("vgg16", depth=11)
