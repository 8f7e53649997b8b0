"""The model zoo against the published facts (the paper's Tables 1-3, the official code): parameter counts, FLOPs,
shapes, gradients, modes, probes and stage numbering, Grad-CAM layer declarations, the official checkpoint layout,
and the CSW block's equations."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision import models

from model import FIRST_STAGE, build_model, load_official_state_dict, local_to_official_keys, model_names, \
    record_weight_maps, run_with_probes, weight_map_modules
from model.lite_hrnet import LiteHRModule
from model.weighting import (
    ChannelWeight,
    CrossResolutionCSW,
    CSWOptions,
    SingleResolutionCSW,
    SpatialWeight,
    eca_kernel_size,
)
from workbench.speed.complexity import fvcore_flops

PARAMETERS = {
    "lite_hrnet_18": 1_130_769,
    "lite_hrnet_30": 1_763_717,
    "mobilenetv2": 9_569_809,
    "shufflenetv2": 7_550_965,
    "resnet50": 33_999_697,
    "resnet152": 68_635_473,
    "hrnet_w32": 28_536_113,
    "small_hrnet_w16": 1_284_961,
}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def models_by_name() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {name: build_model(name).eval() for name in model_names()}


def test_every_table_row_is_registered():
    assert set(PARAMETERS) | {"lite_csw_hrnet"} == set(model_names())


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_exact_parameter_counts(models_by_name, name):
    assert count(models_by_name[name]) == PARAMETERS[name]


def test_lite_csw_hrnet_parameters_match_its_docstring(models_by_name):
    from model.lite_hrnet import lite_csw_hrnet

    n = count(models_by_name["lite_csw_hrnet"])
    assert 870_000 <= n <= 910_000
    assert f"{n:,}" in lite_csw_hrnet.__doc__
    assert f"{count(build_model('lite_csw_hrnet', blocks_per_stage=(2, 2, 2))):,}" in lite_csw_hrnet.__doc__


@pytest.mark.parametrize("size, gflops", [((256, 192), 0.2663), ((384, 288), 0.5991)])
def test_fvcore_gflops_of_lite_hrnet_18(models_by_name, size, gflops):
    assert round(fvcore_flops(models_by_name["lite_hrnet_18"], size) / 1e9, 4) == gflops


@pytest.mark.parametrize("size", [(256, 192), (384, 288)])
@pytest.mark.parametrize("name", model_names())
def test_output_shapes_at_both_input_sizes(name, size):
    """Shapes propagate through the real forward on the meta device (no arithmetic, so the large models stay fast)."""
    with torch.device("meta"):
        model = build_model(name, input_size=size)
        assert model(torch.empty(2, 3, *size)).shape == (2, 17, size[0] // 4, size[1] // 4)


def test_forward_at_paper_size_is_finite(models_by_name):
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        for name in ("lite_csw_hrnet", "lite_hrnet_18", "mobilenetv2", "shufflenetv2"):
            assert torch.isfinite(models_by_name[name](x)).all(), name


def test_any_multiple_of_32_and_clear_errors():
    model = build_model("lite_csw_hrnet", input_size=(320, 224)).eval()
    assert model.input_size == (320, 224)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 320, 224)).shape == (1, 17, 80, 56)
    with pytest.raises(ValueError, match="multiples of 32"):
        build_model("lite_csw_hrnet", input_size=(250, 192))
    with pytest.raises(ValueError, match="unknown model 'lite_hrnet_99'.*lite_csw_hrnet"):
        build_model("lite_hrnet_99")
    with pytest.raises(ValueError, match="bad option for lite_hrnet_18"):
        build_model("lite_hrnet_18", colour="blue")
    with pytest.raises(ValueError, match="order must be one of"):
        build_model("lite_csw_hrnet", order="diagonal")


@pytest.mark.parametrize("name", model_names())
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(name).train()
    model(torch.randn(2, 3, 64, 64)).square().mean().backward()
    without = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert without == []
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", ["lite_csw_hrnet", "lite_hrnet_18", "shufflenetv2", "small_hrnet_w16"])
def test_train_and_eval_modes(name):
    torch.manual_seed(0)
    model = build_model(name)
    x = torch.randn(4, 3, 64, 64)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model.train()
    train_out = model(x)
    assert not torch.equal(before, bn.running_mean), "training mode updates BatchNorm statistics"
    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(first, second), "evaluation mode is deterministic"
    assert not torch.allclose(train_out, first), "training mode normalises with batch statistics"


@pytest.mark.parametrize("name", model_names())
def test_batch_elements_do_not_influence_each_other_in_eval(models_by_name, name):
    torch.manual_seed(1)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        together = models_by_name[name](x)
        alone = models_by_name[name](x[1:2])
    # different batch sizes may take different kernels: equal up to float rounding relative to the output's scale
    torch.testing.assert_close(together[1:2], alone, rtol=0, atol=1e-4 * float(alone.abs().max()))


def test_lite_csw_hrnet_probe_names_and_shapes(models_by_name):
    model = models_by_name["lite_csw_hrnet"]
    x = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        plain = model(x)
        heatmaps, maps = run_with_probes(model, x)
    assert torch.equal(plain, heatmaps)
    # blocks: 2 modules x 2 (stage 2), 4 x 2 (stage 3), 2 x 1 (stage 4); each a cross and per-branch single M_c, M_s
    assert len(maps) == 2 * (4 * (1 + 2) + 8 * (1 + 3) + 2 * (1 + 4))
    assert maps["stage2/module0/block0/cross/channel"].shape == (2, 60)
    assert maps["stage2/module0/block0/cross/spatial"].shape == (2, 1, 32, 24)
    assert maps["stage3/module3/block1/cross/channel"].shape == (2, 140)
    assert maps["stage4/module1/block0/cross/spatial"].shape == (2, 1, 8, 6)
    assert maps["stage4/module1/block0/branch0/single/channel"].shape == (2, 20)
    assert maps["stage4/module1/block0/branch0/single/spatial"].shape == (2, 1, 64, 48)
    assert maps["stage4/module1/block0/branch3/single/spatial"].shape == (2, 1, 8, 6)
    assert "stage4/module1/block1/cross/channel" not in maps
    for name, value in maps.items():
        assert ((value > 0) & (value < 1)).all(), name


def test_lite_hrnet_probe_names_and_shapes(models_by_name):
    model = models_by_name["lite_hrnet_18"]
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        plain = model(x)
        heatmaps, maps = run_with_probes(model, x)
    assert torch.equal(plain, heatmaps)
    assert len(maps) == 4 * (1 + 2) + 8 * (1 + 3) + 4 * (1 + 4)
    assert maps["stage2/module1/block1/cross/weights"].shape == (1, 60, 32, 24)
    assert maps["stage4/module0/block1/cross/weights"].shape == (1, 300, 8, 6)
    assert maps["stage3/module2/block0/branch2/single/channel"].shape == (1, 80)


def test_probes_are_off_by_default(models_by_name):
    model = models_by_name["lite_csw_hrnet"]
    run_with_probes(model, torch.randn(1, 3, 64, 64))
    assert all(not m._forward_hooks for m in model.modules())
    _, maps = run_with_probes(models_by_name["resnet50"], torch.randn(1, 3, 64, 64))
    assert maps == {}


def test_record_weight_maps_reads_each_call_and_removes_its_hooks(models_by_name):
    model = models_by_name["lite_csw_hrnet"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _, expected = run_with_probes(model, x)
        with record_weight_maps(model) as maps:
            assert maps == {}
            model(x)
        model(x.flip(3))  # after the block: not recorded
    assert list(maps) == list(expected)
    assert all(torch.equal(maps[name], expected[name]) for name in expected)
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(RuntimeError, match="boom"), record_weight_maps(model):
        raise RuntimeError("boom")
    assert not any(m._forward_hooks for m in model.modules())


def test_users_see_the_papers_stage_numbers_from_one_definition():
    assert FIRST_STAGE == 2  # Table 1: the stem is stage 1, the weighting stages 2, 3, 4
    with torch.device("meta"):
        lite, hrnet = build_model("lite_hrnet_18"), build_model("small_hrnet_w16")
    paths = {id(module): path for path, module in lite.named_modules()}
    for name, module in weight_map_modules(lite).items():
        stage = int(name.split("/")[0].removeprefix("stage"))
        assert paths[id(module)].startswith(f"backbone.stage{stage - FIRST_STAGE}."), name
    stages = {int(name.split("/")[0].removeprefix("stage")) for name in weight_map_modules(lite)}
    assert stages == {FIRST_STAGE, FIRST_STAGE + 1, FIRST_STAGE + 2}
    for network, stage_attribute in ((lite, lambda s: getattr(lite.backbone, f"stage{s}")),
                                     (hrnet, lambda s: hrnet.stages[s])):
        for name, layer in network.cam_layers().items():
            if name.startswith("stage ") and "branch" in name:
                index = int(name.split()[1]) - FIRST_STAGE
                assert any(layer is m for m in stage_attribute(index).modules()), name
    assert "stage 1 (1/4)" in hrnet.cam_layers() and "stage 4 branch 3 (1/32), last block" in lite.cam_layers()
    with pytest.raises(ValueError, match=r"stages 2, 3, 4"):
        build_model("lite_csw_hrnet", blocks_per_stage=(2, 2))


@pytest.mark.parametrize("name", model_names())
def test_every_family_declares_its_grad_cam_layers(name):
    with torch.device("meta"):
        network = build_model(name)
    layers = network.cam_layers()
    assert len(layers) >= 4 and all(isinstance(layer, torch.nn.Module) for layer in layers.values())
    owned = {id(module) for module in network.modules()}
    assert all(id(layer) in owned for layer in layers.values())
    assert list(layers)[-1] in {"head (1/4)", "deconv 3 (1/4)", "stage 4 branch 3 (1/32), last module"}


def test_official_checkpoint_layout_round_trip():
    torch.manual_seed(0)
    source = build_model("lite_hrnet_18").eval()
    official = local_to_official_keys(source.state_dict())
    assert all(k.startswith(("backbone.", "keypoint_head.final_layer.")) for k in official)
    assert "backbone.stage0.0.layers.0.spatial_weighting.0.conv1.conv.weight" in official
    assert "backbone.stage1.0.layers.0.cross_resolution_weighting.conv2.bn.running_var" in official
    assert "backbone.head_layer.projects.3.pointwise_conv.bn.weight" in official
    assert "backbone.transition1.2.0.0.weight" in official
    assert "backbone.stage2.1.fuse_layers.3.0.2.3.weight" in official
    target = build_model("lite_hrnet_18").eval()
    load_official_state_dict(target, official)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_official_checkpoint_loader_rejects_a_wrong_one():
    official = local_to_official_keys(build_model("lite_hrnet_18").state_dict())
    target = build_model("lite_hrnet_18")
    broken = dict(official)
    del broken["backbone.stem.conv1.conv.weight"]
    broken["backbone.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="missing keys: backbone.stem.conv1.conv.weight.*unexpected keys: backbone.extra"):
        load_official_state_dict(target, broken)
    resized = dict(official, **{"backbone.stem.conv1.conv.weight": torch.zeros(16, 3, 3, 3)})
    with pytest.raises(ValueError, match=r"shape mismatches: backbone.stem.conv1.conv.weight: checkpoint \(16, 3, 3, 3\)"):
        load_official_state_dict(target, resized)
    with pytest.raises(ValueError, match="missing keys: backbone.stage0.2"):
        load_official_state_dict(build_model("lite_hrnet_30"), official)
    with pytest.raises(ValueError, match="conditional channel weighting"):
        load_official_state_dict(build_model("lite_csw_hrnet"), official)


def test_backbone_initialised_from_a_torchvision_state_dict():
    torch.manual_seed(0)
    imagenet = models.shufflenet_v2_x1_0().state_dict()
    model = build_model("shufflenetv2", backbone_weights=imagenet)
    assert torch.equal(model.backbone.conv1[0].weight, imagenet["conv1.0.weight"])
    with pytest.raises(ValueError, match="does not fit this backbone"):
        build_model("mobilenetv2", backbone_weights=imagenet)


def official_fusion(module: LiteHRModule, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """The official LiteHRModule fusion, in-place `+=` on branch 0's tensor included."""
    out = [x.clone() for x in xs]
    fused = []
    for i in range(len(module.fuse_layers)):
        y = out[0] if i == 0 else module.fuse_layers[i][0](out[0])
        for j in range(len(out)):
            if i == j:
                y += out[j]
            else:
                y += module.fuse_layers[i][j](out[j])
        fused.append(torch.relu(y))
    return fused


def test_fusion_reproduces_the_official_in_place_quirk(models_by_name):
    module = models_by_name["lite_hrnet_18"].backbone.stage2[0]
    xs = [torch.randn(1, c, 32 // 2**i, 24 // 2**i) for i, c in enumerate((40, 80, 160, 320))]
    with torch.no_grad():
        module.layers = torch.nn.Sequential()
        ours = module(xs)
        theirs = official_fusion(module, xs)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("channels, k", [(20, 3), (40, 3), (60, 3), (80, 3), (140, 5), (160, 5), (300, 5)])
def test_eca_kernel_rule(channels, k):
    assert eca_kernel_size(channels) == k


def test_channel_weight_is_equation_9():
    torch.manual_seed(0)
    module = ChannelWeight(60)
    x = torch.randn(2, 60, 8, 6)
    conv = lambda v: F.conv1d(v.reshape(2, 1, 60), module.conv.weight, padding=1)  # noqa: E731
    expected = torch.sigmoid(conv(x.mean((2, 3))) + conv(x.amax((2, 3)))).reshape(2, 60, 1, 1)
    torch.testing.assert_close(module(x), expected)
    assert module.conv.weight.shape == (1, 1, 3) and module.conv.bias is None


def test_spatial_weight_is_equation_10():
    torch.manual_seed(0)
    module = SpatialWeight()
    x = torch.randn(2, 40, 8, 6)
    descriptor = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True).values], 1)
    expected = torch.sigmoid(F.conv2d(descriptor, module.conv.weight, padding=3))
    torch.testing.assert_close(module(x), expected)
    assert module.conv.weight.shape == (1, 2, 7, 7)


def test_cross_resolution_csw_is_equations_13_to_15():
    torch.manual_seed(0)
    module = CrossResolutionCSW([20, 40, 80])
    xs = [torch.randn(1, c, 32 // 2**i, 24 // 2**i) for i, c in enumerate((20, 40, 80))]
    pooled = torch.cat([F.adaptive_avg_pool2d(x, (8, 6)) for x in xs], 1)
    w = module.channel_weight(pooled) * module.spatial_weight(pooled)
    expected = [x * F.interpolate(part, size=x.shape[-2:], mode="nearest") for x, part in zip(xs, w.split([20, 40, 80], 1))]
    for a, b in zip(module(xs), expected):
        torch.testing.assert_close(a, b)


def test_csw_ablation_switches():
    base = count(build_model("lite_csw_hrnet"))
    assert count(build_model("lite_csw_hrnet", channel_pooling="avg", spatial_pooling="max")) == base - 49 * 54
    assert count(build_model("lite_csw_hrnet", spatial_kernel=3)) == base - 2 * (49 - 9) * 54
    assert count(build_model("lite_csw_hrnet", spatial_bn=True, spatial_bias=True)) == base + 3 * 54
    assert count(build_model("lite_csw_hrnet", eca_gamma=1.0, eca_b=1.0)) > base
    torch.manual_seed(0)
    options = dict(order="sequential")
    parallel, sequential = SingleResolutionCSW(40), SingleResolutionCSW(40, CSWOptions(**options))
    sequential.load_state_dict(parallel.state_dict())
    x = torch.randn(2, 40, 16, 12)
    m_c = parallel.channel_weight(x)
    torch.testing.assert_close(parallel(x), x * m_c * parallel.spatial_weight(x))
    torch.testing.assert_close(sequential(x), x * m_c * parallel.spatial_weight(x * m_c))
    assert not torch.allclose(parallel(x), sequential(x))
    with torch.no_grad():
        assert build_model("lite_csw_hrnet", **options).eval()(torch.randn(1, 3, 64, 64)).shape == (1, 17, 16, 16)
