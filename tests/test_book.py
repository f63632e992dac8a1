"""The book's chapter 6 facts, through the core."""

import pytest
import torch

from modeltui.core import open_target, parse_input_spec
from sample_models import book
from sample_models.book import BOOK_INPUTS


def opened(name, shape=None):
    specs = [parse_input_spec(shape)] if shape else []
    return open_target(f"sample_models.book:{name}", input_specs=specs)


def shapes(info):
    return {n: t.shape for n, t in info.tensors.items()}


def test_param_net_lists_the_books_shapes():
    info = opened("make_param_net", "2,4").info
    assert shapes(info) == {"0.weight": (8, 4), "0.bias": (8,), "2.weight": (1, 8), "2.bias": (1,)}
    assert all(t.kind == "parameter" and t.requires_grad for t in info.tensors.values())
    assert info.total_params == 8 * 4 + 8 + 8 + 1


def test_lazy_net_without_shape_is_uninitialised_not_an_error():
    info = opened("make_lazy_net").info
    assert info.tensors["0.weight"].shape is None
    assert info.modules["0"].lazy
    assert info.total_params == 0
    assert any("uninitialised" in w for w in info.warnings)


def test_lazy_net_materialises_with_input_shape():
    info = opened("make_lazy_net", "2,20").info
    assert info.tensors["0.weight"].shape == (256, 20)
    assert info.tensors["2.weight"].shape == (10, 256)
    assert not any("uninitialised" in w for w in info.warnings)


def test_shared_layer_is_one_tied_group_counted_once():
    info = opened("make_shared_net", "2,4").info
    groups = sorted(sorted(g) for g in info.tied_groups)
    assert groups == [["2.bias", "4.bias"], ["2.weight", "4.weight"]]
    assert info.tensors["2.weight"].tied_with == ["4.weight"]
    # 0: 8*4+8, shared: 8*8+8 once, 6: 8+1
    assert info.total_params == 40 + 72 + 9
    assert info.root.params == info.total_params
    assert info.modules["4"].shared_with == ["2"]


def test_fixed_hidden_mlp_rand_weight_is_a_constant():
    info = opened("FixedHiddenMLP", "2,20").info
    rw = info.tensors["rand_weight"]
    assert rw.kind == "constant" and rw.shape == (20, 20)
    assert not rw.requires_grad
    assert info.total_params == 20 * 20 + 20  # the constant is not a parameter
    assert "rand_weight" not in book.FixedHiddenMLP().state_dict()


def test_chimera_nesting():
    info = opened("make_chimera", "2,20").info
    assert info.modules["0"].type == "NestMLP"
    assert info.modules["0.net"].type == "Sequential"
    assert info.modules["0.net"].children == ["0.net.0", "0.net.1", "0.net.2", "0.net.3"]
    assert info.tensors["0.net.0.weight"].shape == (64, 20)
    assert info.tensors["2.rand_weight"].kind == "constant"
    assert info.modules["0"].params == 20 * 64 + 64 + 64 * 32 + 32 + 32 * 16 + 16


def test_my_sequential_and_custom_layers():
    info = opened("make_my_sequential", "2,20").info
    assert info.modules[""].type == "MySequential"
    assert info.tensors["2.weight"].shape == (10, 256)
    info = opened("make_centered_net", "4,8").info
    assert info.modules["1"].type == "CenteredLayer"
    assert info.modules["1"].params == 0
    info = opened("make_my_linear_net").info
    assert shapes(info) == {"0.weight": (64, 8), "0.bias": (8,), "1.weight": (8, 1), "1.bias": (1,)}


@pytest.mark.parametrize("name", sorted(BOOK_INPUTS))
def test_every_book_model_opens_and_runs(name):
    (shape,) = BOOK_INPUTS[name]
    o = open_target(f"sample_models.book:{name}", input_specs=[parse_input_spec(",".join(map(str, shape)))])
    assert o.info.kind == "module"
    assert all(t.shape is not None for t in o.info.tensors.values())
    assert o.info.total_params == sum(p.numel() for p in o.model.parameters())


def test_book_initialisers_are_importable_functions():
    net = book.make_param_net()
    net(torch.rand(2, 4))
    net.apply(book.init_constant)
    assert torch.all(net[0].weight == 1) and torch.all(net[0].bias == 0)
    net.apply(book.my_init)
    w = net[0].weight.abs()
    assert torch.all((w == 0) | ((w >= 5) & (w <= 10)))
    for f in (book.init_normal, book.init_xavier, book.init_42):
        net.apply(f)
    assert torch.all(net[0].weight == 42)


def test_grad_presence_is_reported():
    o = open_target("sample_models.book:make_param_net", input_specs=[parse_input_spec("2,4")])
    assert not o.info.tensors["0.weight"].has_grad
    o.model(torch.rand(2, 4)).sum().backward()
    o.refresh()
    assert o.info.tensors["0.weight"].has_grad
