"""The bootstrap agent (Zhang et al., CVPR 2022): MHSA as a head-offset convolution, shared parameters,
losses and the hint-weight schedule."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_vit.config.schema import BootstrapConfig, ModelConfig
from ssl_vit.methods.bootstrap_losses import default_weights, hint_loss, hint_weight, kd_loss
from ssl_vit.methods.supervised import SupervisedClassifier
from ssl_vit.models import create_backbone
from ssl_vit.models.bootstrap import BootstrapAgent, HeadOffsetConv, head_offsets, vit_features_and_tokens


def tiny_vit(heads=2, dim=16, depth=2, stem="patchify", patch=4, size=16):
    torch.manual_seed(0)
    return create_backbone(
        ModelConfig(
            name="vit_micro",
            img_size=size,
            patch_size=patch,
            in_chans=1,
            embed_dim=dim,
            depth=depth,
            num_heads=heads,
            stem=stem,
            pos_embed="learned",
        )
    )


def one_hot_attention_reference(attn, x):
    """The attention module's own value/output path with attention forced to one-hot at each head's offset.

    x: (B, D, gh, gw) -> (B, D, gh, gw), and a (gh, gw) mask of positions whose every offset is inside the grid."""
    B, D, gh, gw = x.shape
    H, d = attn.num_heads, attn.head_dim
    tokens = x.flatten(2).transpose(1, 2)  # (B, N, D)
    v = F.linear(tokens, attn.qkv.weight[2 * D :], attn.qkv.bias[2 * D :]).view(B, gh * gw, H, d).transpose(1, 2)
    A = torch.zeros(H, gh * gw, gh * gw)  # one-hot attention per head
    inside = torch.ones(gh, gw, dtype=torch.bool)
    for h, (dy, dx) in enumerate(head_offsets(H)):
        for i in range(gh):
            for j in range(gw):
                if 0 <= i + dy < gh and 0 <= j + dx < gw:
                    A[h, i * gw + j, (i + dy) * gw + (j + dx)] = 1.0
                else:
                    inside[i, j] = False
    out = (A.unsqueeze(0) @ v).transpose(1, 2).reshape(B, gh * gw, D)  # (B, N, D): softmax(..) V, heads concat
    out = attn.proj(out)  # W_o
    return out.transpose(1, 2).reshape(B, D, gh, gw), inside


def test_head_offsets_are_the_first_kernel_positions():
    assert head_offsets(1) == [(0, 0)]
    assert head_offsets(2) == [(0, 0), (0, 1)]  # k = 2
    assert head_offsets(4) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert head_offsets(6)[:3] == [(-1, -1), (-1, 0), (-1, 1)] and len(head_offsets(6)) == 6  # k = 3, centred
    assert len(set(head_offsets(12))) == 12 and max(max(abs(a), abs(b)) for a, b in head_offsets(12)) == 2  # k = 4


@pytest.mark.parametrize("heads", [2, 4, 9])
def test_conv_equals_one_hot_attention(heads):
    vit = tiny_vit(heads=heads, dim=36 if heads == 9 else 32, depth=1)
    attn = vit.blocks[0].attn
    with torch.no_grad():  # non-zero biases so b_v and b_o are checked too
        attn.qkv.bias.normal_()
        attn.proj.bias.normal_()
    x = torch.randn(2, attn.qkv.in_features, 5, 6)
    ref, inside = one_hot_attention_reference(attn, x)
    y = HeadOffsetConv(attn)(x)
    assert y.shape == ref.shape
    torch.testing.assert_close(y[..., inside], ref[..., inside], atol=1e-5, rtol=1e-5)
    assert inside.sum() > 0


def test_conv_kernel_is_wo_wv_per_head_by_hand():
    vit = tiny_vit(heads=2, dim=8, depth=1)
    attn = vit.blocks[0].attn
    weight, bias = HeadOffsetConv(attn).kernel()
    D, d = 8, 4
    assert weight.shape == (D, D, 2, 2)
    for h, (u, v) in enumerate([(0, 0), (0, 1)]):
        w_v = attn.qkv.weight[2 * D + h * d : 2 * D + (h + 1) * d]  # (d, D)
        w_o = attn.proj.weight[:, h * d : (h + 1) * d]  # (D, d)
        torch.testing.assert_close(weight[:, :, u, v], w_o @ w_v)
    assert torch.all(weight[:, :, 1, :] == 0)  # unused kernel positions
    b_v = attn.qkv.bias[2 * D :]
    torch.testing.assert_close(bias, attn.proj.bias + attn.proj.weight @ b_v)


def test_mlp_as_1x1_convs_matches_the_vit_mlp():
    from ssl_vit.models.bootstrap import TokenwiseMlpConv

    vit = tiny_vit(depth=1)
    mlp = vit.blocks[0].mlp
    x = torch.randn(2, 16, 3, 3)
    ref = mlp(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, 16, 3, 3)
    torch.testing.assert_close(TokenwiseMlpConv(mlp)(x), ref, atol=1e-6, rtol=1e-5)


def test_shared_agent_uses_the_vits_parameter_objects():
    vit = tiny_vit()
    agent = BootstrapAgent(vit, "shared")
    vit_ptrs = {p.data_ptr() for p in vit.parameters()}
    assert agent.blocks[0].attn_conv.attn.qkv.weight is vit.blocks[0].attn.qkv.weight
    assert agent.blocks[1].mlp_conv.mlp.fc2.weight is vit.blocks[1].mlp.fc2.weight
    assert agent.patch_embed is vit.patch_embed
    own = [n for n, p in agent.named_parameters() if p.data_ptr() not in vit_ptrs]
    assert own and all(".norm" in n or n.startswith("norm.") for n in own), own  # only the BNs are its own
    assert all(isinstance(m, torch.nn.BatchNorm2d) for n, m in agent.named_modules() if n.endswith(("norm1", "norm2")))
    joint = BootstrapAgent(vit, "joint")
    assert not ({p.data_ptr() for p in joint.parameters()} & vit_ptrs)
    torch.testing.assert_close(joint.blocks[0].attn_conv.attn.qkv.weight, vit.blocks[0].attn.qkv.weight)  # same init


def test_agent_shapes_for_every_stem():
    from ssl_vit.models import stem_names

    for stem in stem_names():
        vit = tiny_vit(stem=stem)
        feats, maps = BootstrapAgent(vit)(torch.randn(3, 1, 16, 16))
        assert feats.shape == (3, 16) and len(maps) == 2 and maps[0].shape == (3, 16, 4, 4), stem
        f, tokens = vit_features_and_tokens(vit, torch.randn(3, 1, 16, 16))
        assert f.shape == (3, 16) and tokens[0].shape == (3, 16, 16)


@pytest.mark.parametrize("mode", ["shared", "joint"])
def test_one_step_on_the_agent_loss_moves_the_vit_only_when_shared(mode):
    vit = tiny_vit()
    model = SupervisedClassifier(vit, 16, 10, BootstrapConfig(enabled=True, mode=mode))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    vit.eval()
    with torch.no_grad():
        before = vit(x).clone()
    fc1 = vit.blocks[0].mlp.fc1.weight.detach().clone()
    model.train()
    F.cross_entropy(model.classify_agent(x), y).backward()  # the agent's loss only
    opt.step()
    vit.eval()
    with torch.no_grad():
        after = vit(x)
    moved = not torch.equal(fc1, vit.blocks[0].mlp.fc1.weight)
    assert moved == (mode == "shared") and (not torch.allclose(before, after)) == (mode == "shared")


def test_hint_weight_schedule():
    assert hint_weight(0, 100, 5.0) == 5.0
    assert hint_weight(25, 100, 5.0) == pytest.approx(3.75)
    assert hint_weight(100, 100, 5.0) == 0.0 and hint_weight(150, 100, 5.0) == 0.0
    assert hint_weight(50, 100, 10.0, "none") == 10.0
    assert default_weights("shared") == default_weights("shared", 0.5, 0.5, 5.0)
    assert default_weights("joint").hint == 10.0 and default_weights("joint", hint=2).hint == 2.0
    model = SupervisedClassifier(tiny_vit(), 16, 10, BootstrapConfig(enabled=True))
    x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))
    for step, expect in ((0, 5.0), (30, 3.5), (60, 2.0)):
        model.set_progress(step, 100)
        model(x, y)
        assert model.terms["hint_weight"].item() == pytest.approx(expect)


def test_kd_loss_by_hand_and_teacher_detached():
    s = torch.tensor([[1.0, 0.0]], requires_grad=True)
    t = torch.tensor([[0.0, 1.0]], requires_grad=True)
    p = torch.softmax(torch.tensor([0.0, 1.0]) / 4, 0)
    q = torch.softmax(torch.tensor([1.0, 0.0]) / 4, 0)
    expect = 16 * (p * (p / q).log()).sum()  # T^2 KL(teacher || student)
    loss = kd_loss(s, t, 4.0)
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)
    loss.backward()
    assert t.grad is None and s.grad is not None
    assert kd_loss(t.detach(), t.detach()).item() == pytest.approx(0.0, abs=1e-5)


def test_hint_loss_layer_normalises_and_detaches_the_agent():
    tok = torch.randn(2, 4, 8, requires_grad=True)  # (B, N, D)
    fmap = torch.randn(2, 8, 2, 2, requires_grad=True)  # (B, D, 2, 2)
    loss = hint_loss([tok, tok], [fmap, fmap])
    target = fmap.flatten(2).transpose(1, 2)  # (B, N, D)
    ln = lambda z: (z - z.mean(-1, keepdim=True)) / torch.sqrt(z.var(-1, unbiased=False, keepdim=True) + 1e-5)
    assert loss.item() == pytest.approx(2 * ((ln(tok) - ln(target)) ** 2).mean().item(), rel=1e-5)
    loss.backward()
    assert fmap.grad is None and tok.grad is not None
    # a scaled / shifted copy of the same features has zero hint loss (layer normalisation)
    same = (tok.detach() * 3 + 1).transpose(1, 2).reshape(2, 8, 2, 2)
    assert hint_loss([tok.detach()], [same]).item() < 1e-6


def test_bootstrapped_loss_logs_every_term():
    model = SupervisedClassifier(tiny_vit(), 16, 10, BootstrapConfig(enabled=True))
    model.set_progress(0, 10)
    loss = model(torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,)))
    t = model.terms
    assert {"ce_vit", "ce_agent", "kd_loss", "kd_vit", "kd_agent", "hint_loss", "hint_weight"} <= set(t)
    w = default_weights("shared")
    expect = w.ce * (t["ce_vit"] + t["ce_agent"]) + w.kd * t["kd_loss"] + 5.0 * t["hint_loss"]
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)
    assert math.isfinite(loss.item())
