"""Every method on the one injection mechanism: output at init, what trains, parameter counts, and each
module against a hand computation."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models import VisionTransformer

from ssl_vit.adapt import METHODS, build_adapted_model, trainable_summary, vit_layout
from ssl_vit.adapt.convpass import ConvBypass, inject_convpass
from ssl_vit.adapt.lora import LoRAQKV
from ssl_vit.config.schema import AdaptConfig
from ssl_vit.errors import SslvitError

D, DEPTH, C, H = 32, 2, 10, 8  # tiny ViT width / depth, classes, bottleneck


@pytest.mark.parametrize("method", [m for m in METHODS if not m.startswith("vpt")])
@pytest.mark.parametrize("conv_init", ["xavier", "identity"])
def test_at_init_the_adapted_backbone_equals_the_frozen_one(tiny_vit, images, method, conv_init):
    ref = tiny_vit(images)  # (B, D)
    model = build_adapted_model(tiny_vit, method, C, AdaptConfig(), scale=10.0, conv_init=conv_init)
    model.train()  # dropout on: still exact (up = 0)
    model.backbone.apply(lambda m: setattr(m, "drop_prob", 0.0) if hasattr(m, "drop_prob") else None)
    assert torch.equal(model.backbone(images), ref)
    assert model(images).shape == (3, C)


def test_injection_leaves_the_source_backbone_and_its_keys_alone(tiny_vit):
    keys = set(tiny_vit.state_dict())
    for method in METHODS:
        model = build_adapted_model(tiny_vit, method, C, AdaptConfig())
        assert keys <= {k[len("backbone.") :] for k in model.state_dict() if k.startswith("backbone.")}, method
    assert set(tiny_vit.state_dict()) == keys and all(not hasattr(b, "attn_parallel") for b in tiny_vit.blocks)


HAND_COUNTS = {  # trainable parameters without the head, D=32, depth 2, h=8, r=8, 10 prompts
    "linear": 0,
    "convpass": DEPTH * 2 * ((D * H + H) + (H * H * 9 + H) + (H * D + D)),  # 4544
    "convpass_attn": DEPTH * ((D * H + H) + (H * H * 9 + H) + (H * D + D)),  # 2272
    "adapter": DEPTH * ((D * H + H) + (H * D + D)),  # 1104
    "lora": DEPTH * 2 * (D * 8 + 8 * D),  # 2048
    "vpt_shallow": 10 * D,
    "vpt_deep": DEPTH * 10 * D,
}


@pytest.mark.parametrize("method", list(METHODS))
def test_trainable_parameter_counts_match_hand_counts(tiny_vit, method):
    model = build_adapted_model(tiny_vit, method, C, AdaptConfig())
    s = trainable_summary(model)
    backbone = sum(p.numel() for p in tiny_vit.parameters())
    head = D * C + C
    if method == "full":
        assert s["trainable_params"] == s["total_params"] == backbone + head and s["trainable_share"] == 1.0
        return
    assert s["trainable_params_no_head"] == HAND_COUNTS[method]
    assert s["trainable_params"] == HAND_COUNTS[method] + head
    assert s["total_params"] == backbone + head + HAND_COUNTS[method]
    assert s["trainable_share"] == pytest.approx(s["trainable_params"] / s["total_params"])


@pytest.mark.parametrize("method", list(METHODS))
def test_only_the_intended_tensors_receive_gradients(tiny_vit, images, method):
    model = build_adapted_model(tiny_vit, method, C, AdaptConfig(dropout=0.0))
    y = torch.tensor([1, 2, 3])
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):  # after one step the zero-initialised up-projections let gradients through
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), y).backward()
        opt.step()
    intended = {
        "linear": ("head.",),
        "full": ("",),
        "convpass": ("attn_parallel", "mlp_parallel", "head."),
        "convpass_attn": ("attn_parallel", "head."),
        "adapter": ("mlp_out", "head."),
        "lora": ("lora_q", "lora_v", "head."),
        "vpt_shallow": ("tokens_in", "head."),
        "vpt_deep": ("tokens_in", "head."),
    }[method]
    for name, p in model.named_parameters():
        if any(t in name for t in intended):
            if name == "backbone.pos_embed" or name.startswith("backbone.patch_embed") or "cls_token" in name:
                continue  # full: frozen-by-design tensors train too, their gradient may be tiny
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None and not p.requires_grad, name
    if method == "convpass_attn":
        assert all(b.mlp_parallel is None for b in model.backbone.blocks)


def test_conv_bypass_matches_a_hand_computation_on_the_grid_and_the_cls_token():
    torch.manual_seed(0)
    grid, b, d, h = (3, 4), 2, 16, 8  # a non-square grid: 12 patch tokens + 1 CLS
    m = ConvBypass(d, h, grid, num_prefix=1, scale=0.5, conv_init="identity", dropout=0.0)
    nn.init.normal_(m.up.weight)
    with torch.no_grad():  # kernel that reads the right neighbour only
        m.conv.weight.zero_()
        m.conv.weight[:, :, 1, 2] = torch.eye(h)
        m.conv.bias.fill_(0.25)
    x = torch.randn(b, 1 + 12, d)
    z = m.act(m.down(x))  # (B, 13, h)
    qg = lambda t: t * torch.sigmoid(1.702 * t)  # QuickGELU
    want = torch.empty_like(z)
    want[:, 0] = qg(torch.full_like(z[:, 0], 0.25))  # 1x1 map: the shifted tap sees zero padding
    for r in range(3):
        for c in range(4):
            t = 1 + r * 4 + c  # timm's row-major patch order
            right = z[:, t + 1] if c < 3 else torch.zeros_like(z[:, t])
            want[:, t] = qg(right + 0.25)
    assert torch.allclose(m(x), 0.5 * m.up(want), atol=1e-5)


def test_conv_bypass_identity_centre_and_cls_through_the_centre_tap():
    torch.manual_seed(0)
    m = ConvBypass(16, 8, (2, 2), num_prefix=1, scale=1.0, conv_init="identity", dropout=0.0)
    nn.init.normal_(m.up.weight)
    x = torch.randn(2, 5, 16)
    qg = lambda t: t * torch.sigmoid(1.702 * t)
    assert torch.allclose(m(x), m.up(qg(qg(m.down(x)))), atol=1e-6)  # identity conv on every token
    torch.manual_seed(0)
    m = ConvBypass(16, 8, (2, 2), num_prefix=1, scale=1.0, conv_init="xavier", dropout=0.0)
    nn.init.normal_(m.up.weight)
    cls = F.linear(m.act(m.down(x[:, :1])), m.conv.weight[:, :, 1, 1], m.conv.bias)  # centre tap only
    assert torch.allclose(m(x)[:, :1], m.up(m.act(cls)), atol=1e-5)


@pytest.mark.parametrize("class_token,reg_tokens,img", [(False, 0, (16, 24)), (True, 4, (24, 16))])
def test_convpass_on_any_timm_vit_prefix_and_grid(class_token, reg_tokens, img):
    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=img,
        patch_size=8,
        in_chans=3,
        num_classes=0,
        embed_dim=24,
        depth=1,
        num_heads=2,
        class_token=class_token,
        reg_tokens=reg_tokens,
        global_pool="token" if class_token else "avg",
    ).eval()
    lay = vit_layout(vit)
    assert lay.num_prefix == int(class_token) + reg_tokens and lay.grid == (img[0] // 8, img[1] // 8)
    x = torch.randn(2, 3, *img)
    ref = vit(x)
    added = inject_convpass(vit, scale=1.0)
    assert torch.equal(vit(x), ref) and len(added) == 2
    for m in added:
        nn.init.normal_(m.up.weight)
    assert vit(x).shape == ref.shape and not torch.allclose(vit(x), ref)


def test_lora_equals_the_merged_qkv_weight(tiny_vit, images):
    model = build_adapted_model(tiny_vit, "lora", C, AdaptConfig(), scale=0.3).eval()
    qkv = model.backbone.blocks[0].attn.qkv
    assert isinstance(qkv, LoRAQKV)
    for lr in (qkv.lora_q, qkv.lora_v):
        nn.init.normal_(lr.up.weight)
    delta = lambda lr: 0.3 * lr.up.weight @ lr.down.weight  # (D, D)
    merged = qkv.weight + torch.cat([delta(qkv.lora_q), torch.zeros(D, D), delta(qkv.lora_v)], 0)
    x = torch.randn(2, 5, D)
    assert torch.allclose(qkv(x), F.linear(x, merged, qkv.bias), atol=1e-5)


def _manual_vpt(vit, prompts, x, deep):
    """VPT by hand on the plain timm backbone: [cls, P, patches], deep: P_i replace the prompt outputs."""
    t = vit._pos_embed(vit.patch_embed(x))  # (B, 1 + L, D)
    n = prompts[0].shape[1]
    for i, blk in enumerate(vit.blocks):
        p = prompts[i if deep else 0].expand(t.shape[0], -1, -1)
        if i == 0:
            t = torch.cat([t[:, :1], p, t[:, 1:]], 1)
        elif deep:
            t = torch.cat([t[:, :1], p, t[:, 1 + n :]], 1)
        t = blk(t)
    return vit.norm(t)[:, 0]


@pytest.mark.parametrize("deep", [False, True])
def test_vpt_matches_prompts_inserted_by_hand(tiny_vit, images, deep):
    """Prompts are attended to, so VPT does not start as the backbone: check it against the definition."""
    model = build_adapted_model(tiny_vit, "vpt_deep" if deep else "vpt_shallow", C, AdaptConfig(vpt_tokens=3)).eval()
    blocks = model.backbone.blocks
    prompts = [b.tokens_in.prompts for b in blocks if b.tokens_in is not None]
    assert len(prompts) == (DEPTH if deep else 1) and prompts[0].shape == (1, 3, D)
    bound = math.sqrt(6.0 / (1 * 7 * 7 + D))  # VPT init: C * p * p + D
    assert all(p.abs().max() <= bound for p in prompts)
    with torch.no_grad():
        want = _manual_vpt(tiny_vit, prompts, images, deep)
    assert torch.allclose(model.backbone(images), want, atol=1e-5)


def test_unknown_method_is_one_line():
    with pytest.raises(SslvitError, match="did you mean 'lora'") as e:
        build_adapted_model(nn.Linear(2, 2), "lorra", 2, AdaptConfig())
    assert "\n" not in str(e.value)
