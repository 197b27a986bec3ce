"""SS2D, Low-Rank SS2D, VSS block and pixel fusion."""

from __future__ import annotations

import pytest
import torch

from dlrmamba_core.layers import SS2D, LowRankSS2D, PixelFusion, VSSBlock, cross_merge, cross_scan


def test_cross_scan_orders_and_merge_inverts() -> None:
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)  # (B, E, H, W)
    xs = cross_scan(x)
    assert xs.shape == (1, 4, 2, 12)
    assert xs[0, 0, 0].tolist() == x[0, 0].flatten().tolist()  # row-major
    assert xs[0, 1, 0].tolist() == x[0, 0].T.flatten().tolist()  # column-major
    assert xs[0, 2, 0].tolist() == x[0, 0].flatten().flip(0).tolist()
    assert xs[0, 3, 0].tolist() == x[0, 0].T.flatten().flip(0).tolist()
    # Each direction maps back to its pixel: merging the 4 copies gives 4 * x.
    torch.testing.assert_close(cross_merge(xs, 3, 4), 4 * x.flatten(2))


def test_ss2d_chunked_equals_reference_scan_and_backprops() -> None:
    torch.manual_seed(0)
    block = SS2D(16, d_state=4, ssm_ratio=1.5)
    x = torch.randn(2, 5, 7, 16, requires_grad=True)
    y_fast = block(x)
    block.scan = "ref"
    y_ref = block(x)
    torch.testing.assert_close(y_fast, y_ref, atol=1e-4, rtol=1e-4)
    y_fast.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())


def test_low_rank_ss2d_at_full_rank_is_ss2d_and_smaller_at_low_rank() -> None:
    from dlrmamba_core.models.student import dense_weight, fill_lowrank

    torch.manual_seed(0)
    full = SS2D(32, d_state=4)
    exact = LowRankSS2D(32, d_state=4, rank_ratio=1.0)
    shared = {k: v for k, v in full.state_dict().items() if k in exact.state_dict()}
    exact.load_state_dict(shared, strict=False)  # A_log, D, dt_bias, conv, norm
    for name in ("in_proj", "x_proj", "dt_proj", "out_proj"):
        fill_lowrank(getattr(exact, name), dense_weight(getattr(full, name)))
    x = torch.randn(1, 4, 6, 32)
    with torch.no_grad():
        torch.testing.assert_close(exact(x), full(x), atol=1e-4, rtol=1e-4)
    low = LowRankSS2D(32, d_state=4, rank_ratio=0.25)
    n_full = sum(p.numel() for p in full.parameters())
    assert sum(p.numel() for p in low.parameters()) < 0.6 * n_full


def test_vss_block_is_residual() -> None:
    """With the SS2D and MLP output layers at zero the block is the identity; otherwise each
    branch adds to its input."""
    torch.manual_seed(0)
    block = VSSBlock(24, d_state=4, mlp_ratio=2.0)
    x = torch.randn(2, 4, 4, 24)
    with torch.no_grad():
        h = x + block.ssm(block.norm(x))
        assert block.mlp is not None
        torch.testing.assert_close(block(x), h + block.mlp(block.norm2(h)))
        block.ssm.out_proj.weight.zero_()
        for p in block.mlp.fc2.parameters():
            p.zero_()
        torch.testing.assert_close(block(x), x)


def test_pixel_fusion_is_small_and_starts_as_average() -> None:
    fusion = PixelFusion()
    n = sum(p.numel() for p in fusion.parameters())
    assert 800 <= n <= 2500, n
    rgb = torch.rand(1, 3, 16, 20)
    th = torch.rand(1, 1, 16, 20)
    torch.testing.assert_close(fusion(rgb, th), 0.5 * rgb + 0.5 * th)


def test_profile_parts_split_an_exported_ss2d_graph(tmp_path) -> None:
    """deploy.profile's categorize_nodes puts each SS2D node in the right part: the scan's
    Exp/Clip/MatMul-with-triangle nodes in the scan, the cross-scan Concat before x_proj,
    the projections by submodule (checked on a real TorchScript export of a VSS block)."""
    import onnx

    from dlrmamba_core.deploy.profile import categorize_nodes

    torch.manual_seed(0)
    block = VSSBlock(16, d_state=4, ssm_ratio=1.0, mlp_ratio=2.0, rank_ratio=0.5).eval()
    path = tmp_path / "vss.onnx"
    torch.onnx.export(block, (torch.randn(1, 4, 6, 16),), str(path), opset_version=17,
                      dynamo=False)
    cats = categorize_nodes(path)
    nodes = onnx.load(str(path)).graph.node
    assert set(cats) == {n.name for n in nodes}
    by_op: dict[str, set[str]] = {}
    for n in nodes:
        if "/ssm/" in n.name and "/ssm/" not in n.name.split("/ssm/", 1)[1]:
            by_op.setdefault(n.op_type, set()).add(cats[n.name])
    # Exp of the scan (and of A_log: both before the merge) and the clamp are scan nodes.
    assert by_op["Clip"] == {"selective scan (chunked)"}
    assert "selective scan (chunked)" in by_op["Exp"]
    assert "selective scan (chunked)" in by_op["ReduceSum"]
    # The reversal Gather of cross_merge is merge work, never scan work.
    assert by_op["Gather"] >= {"cross-scan / cross-merge (transposes, flips, concats)"}
    ssm_cats = {cats[n.name] for n in nodes if "/ssm/" in n.name}
    assert {"SS2D projections (in, x, dt, out)", "norms", "SS2D output gate",
            "SS2D depthwise conv + SiLU"} <= ssm_cats
    assert all(cats[n.name] == "SS2D projections (in, x, dt, out)"
               for n in nodes if "/ssm/in_proj/" in n.name or "/ssm/out_proj/" in n.name)
    assert all(cats[n.name] == "VSS MLP (fc1, GELU, fc2)" for n in nodes if "/mlp/" in n.name)


def test_two_direction_scan_is_row_major_forward_and_backward() -> None:
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)  # (B, E, H, W)
    xs = cross_scan(x, 2)
    assert xs.shape == (1, 2, 2, 12)
    assert xs[0, 0, 1].tolist() == x[0, 1].flatten().tolist()
    assert xs[0, 1, 1].tolist() == x[0, 1].flatten().flip(0).tolist()
    torch.testing.assert_close(cross_merge(xs, 3, 4), 2 * x.flatten(2))
    with pytest.raises(ValueError, match="directions"):
        cross_scan(x, 3)


@pytest.mark.parametrize("low_rank", [False, True])
def test_two_direction_ss2d_matches_reference_forward_and_grads(low_rank: bool) -> None:
    torch.manual_seed(0)
    block = (LowRankSS2D(16, d_state=4, ssm_ratio=1.0, rank_ratio=0.5, directions=2)
             if low_rank else SS2D(16, d_state=4, ssm_ratio=1.0, directions=2))
    assert block.dt_bias.shape == (2, 16) and block.A_log.shape == (32, 4)
    x = torch.randn(2, 5, 7, 16, requires_grad=True)
    y_fast = block(x)
    g_fast = torch.autograd.grad(y_fast.square().mean(), [x, *block.parameters()])
    block.scan = "ref"
    y_ref = block(x)
    g_ref = torch.autograd.grad(y_ref.square().mean(), [x, *block.parameters()])
    torch.testing.assert_close(y_fast, y_ref, atol=1e-4, rtol=1e-4)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_default_directions_keep_the_four_direction_parameters() -> None:
    """A config dict stored before the ``scan_dirs`` knob existed (no such key) builds the
    4-direction model with the same state-dict keys, shapes and seeded init as today's."""
    from dlrmamba_core.models import build_from_config, get_config
    from dlrmamba_core.models.config import DetectorConfig

    old = get_config("student", 7).to_dict()
    del old["scan_dirs"]
    torch.manual_seed(0)
    a = build_from_config(DetectorConfig.from_dict(old)).state_dict()
    torch.manual_seed(0)
    b = build_from_config(get_config("student", 7, scan_dirs=(2, 2, 2))).state_dict()
    assert a["backbone.stages.1.blocks.0.ssm.dt_bias"].shape[0] == 4
    assert b["backbone.stages.1.blocks.0.ssm.dt_bias"].shape[0] == 2
    assert list(a) == list(b)  # same modules, fewer direction slices


@pytest.mark.parametrize("directions", [2, 4])
def test_vss_block_onnx_matches_torch(tmp_path, directions: int) -> None:
    """The exported graph (TorchScript, opset 17) of a low-rank VSS block computes what torch
    computes, within 1e-4, for both direction counts."""
    import onnxruntime as ort

    torch.manual_seed(0)
    block = VSSBlock(16, d_state=4, ssm_ratio=1.0, mlp_ratio=2.0, rank_ratio=0.5,
                     directions=directions).eval()
    x = torch.randn(1, 6, 10, 16)
    path = tmp_path / "vss.onnx"
    torch.onnx.export(block, (x,), str(path), opset_version=17, dynamo=False,
                      input_names=["x"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = block(x).numpy()
    assert abs(got - want).max() < 1e-4


def test_profile_regions_name_each_ss2d_part_per_block(tmp_path) -> None:
    """categorize_nodes(detail=True) splits an exported low-rank student's SS2D nodes into the
    parts of each block (in_proj, conv, cross-scan, x_proj, dt_proj, scan, cross-merge,
    out_proj) at the right pyramid level, and the rest into fusion / neck / head / decode."""
    import onnx

    from dlrmamba_core.deploy.profile import categorize_nodes
    from dlrmamba_core.models import build_model

    torch.manual_seed(0)
    model = build_model("nano", 2, stage_types=("conv", "vss", "vss"), scan_dirs=(4, 4, 2),
                        rank_ratio=0.5).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 64, 96), torch.rand(1, 1, 64, 96)), str(path),
                      opset_version=17, dynamo=False)
    cats = categorize_nodes(path, detail=True)
    nodes = onnx.load(str(path)).graph.node
    assert set(cats) == {n.name for n in nodes}
    regions = set(cats.values())
    for level in ("P4", "P5"):
        for part in ("in_proj", "conv", "cross-scan", "x_proj", "dt_proj", "scan",
                     "cross-merge", "out_proj"):
            assert f"{level} block 0 SS2D {part}" in regions, (level, part)
    assert not any(r.startswith("P3 block") for r in regions)  # P3 is a conv stage here
    assert {"RGB-thermal fusion", "neck (PAN)", "head (box + class branches)", "stem"} <= regions
    # The 4-direction block's column-major Transposes are cross-scan / cross-merge work; the
    # 2-direction block's cross-scan has none (the scan's few are F.pad's, on tiny levels).
    def transposes(level: str, part: str) -> int:
        return sum(1 for n in nodes if n.op_type == "Transpose"
                   and cats[n.name] == f"{level} block 0 SS2D {part}")

    assert transposes("P4", "cross-scan") >= 1 and transposes("P5", "cross-scan") == 0
    # Both merges end with the (B, E, L) -> (B, L, E) transpose for out_norm; only the
    # 4-direction one also maps the column-major direction back.
    assert transposes("P4", "cross-merge") > transposes("P5", "cross-merge") >= 1
    scan_ops = {n.op_type for n in nodes if cats[n.name] == "P5 block 0 SS2D scan"}
    assert {"Exp", "Clip", "MatMul", "ReduceSum"} <= scan_ops


def test_pixel_fusion_gate_sigmoid_before_upsample_is_exact() -> None:
    """The gate is sigmoid(quarter-res logits) repeated x4: bitwise the sigmoid of the
    repeated logits (the full-resolution form it replaced), with trained-like random weights."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    fusion = PixelFusion()
    with torch.no_grad():
        for p in fusion.parameters():
            p.normal_()
        rgb, th = torch.rand(2, 3, 32, 48), torch.rand(2, 1, 32, 48)
        logits = fusion.net(torch.cat([rgb, th], 1))
        gate = torch.sigmoid(F.interpolate(logits, scale_factor=4.0, mode="nearest"))
        assert torch.equal(fusion(rgb, th), th + gate * (rgb - th))
