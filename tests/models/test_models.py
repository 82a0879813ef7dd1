"""Model registry and analytic receptive fields (checked against gradients)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from patchforensics.models import (INIT_TYPES, architecture_field, create_model, is_patch_model, list_models,
                                   list_patch_models, receptive_field)

SEED_NAMES = ["xception_block1", "xception_block2", "xception_block5", "resnet18_layer1", "resnet50_layer4",
              "widenet_kw7_d1", "xception", "resnet18", "resnet34", "resnet50"]


def test_registry_has_the_seed_names():
    names = list_models()
    for n in SEED_NAMES:
        assert n in names
    # the seed's own classification, written out (not derived from the names)
    full = {"xception", "resnet18", "resnet34", "resnet50"}
    assert set(names) - set(list_patch_models()) == full
    assert {n for n in SEED_NAMES if is_patch_model(n)} == set(SEED_NAMES) - full


@pytest.mark.parametrize("name", list_models())
def test_patch_or_full_is_what_the_network_outputs(name):
    """The registry's flag agrees with the network: a map of logits or one pair per image."""
    with torch.no_grad():
        y = create_model(name, seed=0).eval()(torch.zeros(1, 3, 224, 224))
    assert y.shape[:2] == (1, 2)
    assert (y.shape[2] * y.shape[3] > 1) == is_patch_model(name) == hasattr(create_model(name, seed=0), "head")


def test_architecture_field_needs_no_weights_and_matches_a_built_model():
    rf, built = architecture_field("xception_block2", 128), receptive_field(create_model("xception_block2"), 128)
    assert (rf.size, rf.stride, rf.output_size) == ((43, 43), (8, 8), (16, 16))
    np.testing.assert_array_equal(rf.clipped_boxes(), built.clipped_boxes())


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="xception_block2"):
        create_model("xception_block9")


@pytest.mark.parametrize("name", ["xception_block2", "resnet18_layer1", "widenet_kw5_d2", "resnet18"])
def test_output_shape_and_seeded_init(name):
    a, b = create_model(name, seed=3), create_model(name, seed=3)
    c = create_model(name, seed=4)
    for (ka, va), (_, vb), (_, vc) in zip(a.state_dict().items(), b.state_dict().items(), c.state_dict().items()):
        assert torch.equal(va, vb), ka
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))
    with torch.no_grad():
        y = a.eval()(torch.randn(2, 3, 96, 96))
    assert y.shape[:2] == (2, 2)
    assert (y.shape[2] > 1) == is_patch_model(name)


@pytest.mark.parametrize("init", INIT_TYPES)
def test_init_types_give_finite_weights_of_the_chosen_law(init):
    m = create_model("widenet_kw7_d1", init=init, seed=0)
    assert all(torch.isfinite(p).all() for p in m.parameters())
    w = m.features.conv.weight.detach()
    fan_in, fan_out = w[0].numel(), w.shape[0] * w[0, 0].numel()
    expected_std = {"normal": 0.02, "xavier": 0.02 * (2.0 / (fan_in + fan_out)) ** 0.5,
                    "kaiming": (2.0 / fan_in) ** 0.5}
    if init in expected_std:
        assert float(w.std()) == pytest.approx(expected_std[init], rel=0.1)
    else:   # orthonormal columns (more rows than columns here), scaled by the gain: W^T W = gain^2 I
        flat = w.reshape(w.shape[0], -1)
        torch.testing.assert_close(flat.T @ flat, 0.02 ** 2 * torch.eye(flat.shape[1]), atol=1e-6, rtol=0)
    assert all(torch.count_nonzero(mod.bias) == 0 for mod in m.modules()
               if isinstance(mod, nn.Conv2d) and mod.bias is not None)


def test_init_types_differ():
    weights = [create_model("widenet_kw7_d1", init=i, seed=0).features.conv.weight for i in INIT_TYPES]
    assert all(not torch.equal(a, b) for i, a in enumerate(weights) for b in weights[i + 1:])


def _dense_copy(model: nn.Module) -> nn.Module:
    """Same geometry, but linear with positive weights and average pools, so every
    input pixel inside a receptive field gets a non-zero gradient."""
    m = copy.deepcopy(model).eval()

    def swap(parent):
        for name, child in parent.named_children():
            if isinstance(child, nn.MaxPool2d):
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
            elif isinstance(child, nn.ReLU):
                setattr(parent, name, nn.Identity())
            else:
                swap(child)
    swap(m)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.Conv2d):
                mod.weight.abs_().add_(1e-3)
            elif isinstance(mod, nn.BatchNorm2d):
                mod.reset_running_stats()
                mod.weight.fill_(1.0)
                mod.bias.zero_()
    return m


@pytest.mark.parametrize("name", list_patch_models())
def test_receptive_field_matches_gradient_brute_force(name):
    size = 72
    model = create_model(name, seed=0)
    rf = receptive_field(model, size)
    dense = _dense_copy(model)
    x = torch.rand(1, 3, size, size, requires_grad=True)
    out = dense(x)
    assert tuple(out.shape[2:]) == rf.output_size
    h, w = rf.output_size
    positions = {(0, 0), (h - 1, w - 1), (h // 2, w // 2), (0, w - 1), (h // 3, 2 * w // 3)}
    clipped = rf.clipped_boxes()
    for (y, xx) in positions:
        grad, = torch.autograd.grad(out[0, 1, y, xx], x, retain_graph=True)
        seen = grad.abs().sum(dim=(0, 1)).numpy() > 0
        rows, cols = np.flatnonzero(seen.any(1)), np.flatnonzero(seen.any(0))
        brute = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
        assert brute == tuple(clipped[y, xx]), f"{name} at {(y, xx)}: analytic {clipped[y, xx]} vs {brute}"


def test_receptive_field_values_for_the_papers_models():
    # fields of the paper's main models, at the 128-px input used here
    assert receptive_field(create_model("xception_block2"), 128).size == (43, 43)
    assert receptive_field(create_model("resnet18_layer1"), 128).size == (43, 43)
    assert receptive_field(create_model("widenet_kw7_d1"), 128).size == (11, 11)


def test_full_models_have_no_patch_field():
    with pytest.raises(ValueError, match="patch models only"):
        receptive_field(create_model("resnet18"), 128)
