"""ViTAS superformer: channel sharing balance, identity shifting, export equivalence, FLOPs, per-step sampling."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch
from timm.models import VisionTransformer

from ssl_vit.config.schema import ModelConfig, ViTASConfig
from ssl_vit.core.input_spec import InputSpec
from ssl_vit.models import create_backbone
from ssl_vit.models.flops import count_gflops
from ssl_vit.models.vitas import ViTASSuperformer, export_subnet
from ssl_vit.models.vitas_space import SubNet, channel_indices, channel_usage


def _cfg(**vitas) -> ModelConfig:
    v = replace(
        ViTASConfig(embed_dims="16,24,32", heads="2,4", mlp_ratios="1,2", patch_sizes="7,14", min_depth=1), **vitas
    )
    return ModelConfig(name="vitas_super", img_size=28, patch_size=7, in_chans=1, depth=3, vitas=v)


def _super(**vitas) -> ViTASSuperformer:
    torch.manual_seed(0)
    sf = create_backbone(_cfg(**vitas))
    with torch.no_grad():  # non-trivial norms / biases, so slicing mistakes show
        for n, p in sf.named_parameters():
            if "norm" in n or "bias" in n:
                p.add_(torch.randn_like(p) * 0.3)
    return sf.eval()


# ---- cyclic vs prefix sharing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "total,cands", [(96, (48, 64, 80, 96)), (384, (38, 77, 115, 154, 192, 230, 269, 307, 346, 384))]
)
def test_cyclic_usage_is_near_uniform_and_prefix_is_not(total, cands):
    cyc = channel_usage(total, cands, "cyclic")
    pre = channel_usage(total, cands, "prefix")
    # every candidate uses exactly its width in both schemes
    assert int(cyc.sum()) == int(pre.sum()) == sum(cands)
    # cyclic: the candidates tile a ring, so each channel is used floor or ceil(sum / total) times
    s = sum(cands)
    assert int(cyc.min()) == s // total and int(cyc.max()) == -(-s // total)
    # prefix: channel 0 serves all candidates, the last channel only the widest
    assert int(pre[0]) == len(cands) and int(pre[-1]) == 1
    assert (pre.max() - pre.min()) == len(cands) - 1 > (cyc.max() - cyc.min())


def test_cyclic_indices_wrap_around_the_ring():
    idx = channel_indices(96, 64, (48, 64, 80, 96), "cyclic")
    assert idx.tolist() == list(range(48, 96)) + list(range(0, 16))  # starts after the 48-wide candidate
    assert channel_indices(96, 64, (48, 64, 80, 96), "prefix").tolist() == list(range(64))


def test_sampled_training_usage_is_flatter_with_cyclic_sharing():
    """Channel usage over the sub-networks the training loop actually samples (uniform rule)."""
    spread = {}
    for mode in ("cyclic", "prefix"):
        sf = _super(sharing=mode)
        use = torch.zeros(sf.embed_dim)
        for step in range(300):
            net = sf.subnet_for_step(step, seed=0)
            use[sf.channels("e", net.embed_dim, "cpu")] += 1
        spread[mode] = (use.min() / use.max()).item()
    # widths 16/24/32 on 32 channels: cyclic lays 72 channel-uses on the ring -> each channel 2 or 3 of the
    # candidates (ratio 2/3); prefix 3, 2 or 1 (ratio 1/3). Sampling noise moves these by a few percent.
    assert spread["cyclic"] > 0.55 and spread["prefix"] < 0.45


# ---- identity shifting -------------------------------------------------------------------------------------
def test_identity_shifting_maps_real_blocks_to_the_front():
    net = SubNet(7, 32, ((4, 2.0), None, (2, 1.0)))
    assert [i for i, _, _ in net.executed(True)] == [0, 1]
    assert [i for i, _, _ in net.executed(False)] == [0, 2]
    assert net.canonical(True).blocks == ((4, 2.0), (2, 1.0), None)
    assert net.canonical(False) == net


@pytest.mark.parametrize("shifting", [True, False])
def test_identity_shifting_decides_which_superformer_blocks_run(shifting):
    sf = _super(identity_shifting=shifting).train()
    net = SubNet(7, 24, ((2, 2.0), None, (4, 1.0)))
    sf.set_subnet(net)
    sf(torch.randn(4, 1, 28, 28)).pow(2).sum().backward()
    got = [
        sf.blocks[i].attn.qkv.weight.grad is not None and bool(sf.blocks[i].attn.qkv.weight.grad.abs().sum() > 0)
        for i in range(3)
    ]
    assert got == ([True, True, False] if shifting else [True, False, True])
    # with shifting, the encodings [A, id, B] and [A, B, id] are one network; without, two
    x = torch.randn(2, 1, 28, 28)
    sf.eval()
    with torch.no_grad():
        a = sf.forward_features(x)
        sf.set_subnet(net.canonical(True))
        b = sf.forward_features(x)
    assert torch.allclose(a, b) == shifting


# ---- export -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sharing", ["cyclic", "prefix"])
def test_exported_subnet_matches_the_superformer(sharing):
    sf = _super(sharing=sharing)
    x = torch.randn(3, 1, 28, 28)
    rng = random.Random(1)
    for _ in range(3):
        net = sf.space.sample(rng)
        sf.set_subnet(net)
        vit = export_subnet(sf, net).eval()
        assert isinstance(vit, VisionTransformer)
        assert len(vit.blocks) == net.depth
        assert [b.attn.num_heads for b in vit.blocks] == [h for _, h, _ in net.executed(True)]
        with torch.no_grad():
            ref, out, padded = sf.forward_features(x), vit(x), sf(x)
        assert torch.allclose(out, ref, atol=1e-5)
        e = sf.channels("e", net.embed_dim, "cpu")
        off = torch.ones(sf.embed_dim, dtype=torch.bool)
        off[e] = False
        assert torch.allclose(padded[:, e], ref) and not padded[:, off].any()


def test_exported_weights_load_through_the_checkpoint_loader(tmp_path):
    from ssl_vit.checkpoints import load_backbone
    from ssl_vit.checkpoints.formats import save_backbone
    from ssl_vit.config.loading import to_dict

    sf = _super()
    net = SubNet(7, 24, ((2, 2.0), (4, 1.0), None))
    sf.set_subnet(net)
    save_backbone(
        tmp_path / "sub.safetensors",
        sf.subnet_state_dict(net),
        to_dict(sf.subnet_model_config(net)),
        InputSpec(28, 1, (0.5,), (0.5,)),
    )
    loaded = load_backbone(tmp_path / "sub.safetensors")
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded.model.eval()(x), sf.forward_features(x), atol=1e-5)


# ---- FLOPs ----------------------------------------------------------------------------------------------------
def _hand_flops(net: SubNet, img: int = 28, chans: int = 1) -> int:
    """2 FLOPs per multiply-add: patch conv, per block qkv, q@k^T, attn@v, proj, fc1, fc2."""
    w, p = net.embed_dim, net.patch_size
    n = (img // p) ** 2
    t = n + 1
    f = 2 * n * w * chans * p * p
    for b in net.blocks:
        if b is not None:
            hid = int(w * b[1])
            f += 2 * (t * w * 3 * w + 2 * t * t * w + t * w * w + 2 * t * w * hid)
    return f


def test_flops_of_superformer_subnet_equal_exported_net_and_hand_count():
    sf = _super()
    rng = random.Random(3)
    for _ in range(3):
        net = sf.space.sample(rng)
        sf.set_subnet(net)
        g_super = count_gflops(sf, 28, 1)
        g_vit = count_gflops(export_subnet(sf, net), 28, 1)
        assert g_super == g_vit
        assert round(g_super * 1e9) == _hand_flops(net)


# ---- per-step sampling ------------------------------------------------------------------------------------------
def test_step_subnets_are_a_function_of_seed_and_step_and_momentum_encoder_follows():
    from ssl_vit.config.schema import MethodConfig
    from ssl_vit.methods.mocov3 import build_mocov3

    sf = _super()
    seq = [sf.subnet_for_step(s, 0) for s in range(20)]
    assert seq == [sf.subnet_for_step(s, 0) for s in range(20)]
    assert seq != [sf.subnet_for_step(s, 1) for s in range(20)]
    assert len({n.key() for n in seq}) > 5
    moco = build_mocov3(sf, sf.num_features, MethodConfig(proj_hidden_dim=16, pred_hidden_dim=16, out_dim=8))
    for s in (3, 7):
        moco.begin_step(s, 0)
        assert moco.backbone.subnet == moco.momentum_backbone.subnet == seq[s]
    loss = moco(torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28), 0.99)
    assert torch.isfinite(loss)


def test_supervised_superformer_training_samples_the_same_subnets():
    """`sslvit train` with a superformer: the classifier forwards the step's sub-network choice."""
    from ssl_vit.methods.supervised import SupervisedClassifier

    sf = _super()
    clf = SupervisedClassifier(sf, sf.num_features, 10)
    for s in (2, 5):
        clf.begin_step(s, 0)
        assert clf.backbone.subnet == sf.subnet_for_step(s, 0)
    loss = clf(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss) and clf.head.weight.grad is not None


def test_sandwich_rule_cycles_largest_smallest_random():
    sf = _super(sampling="sandwich")
    assert sf.subnet_for_step(0, 0) == sf.space.largest() == sf.subnet_for_step(3, 0)
    assert sf.subnet_for_step(1, 0) == sf.space.smallest()
    assert sf.space.contains(sf.subnet_for_step(2, 0))


def test_bad_choices_are_one_line_errors():
    from ssl_vit.errors import SslvitError

    sf = _super()
    with pytest.raises(SslvitError, match="not in the search space"):
        sf.set_subnet(SubNet(7, 20, ((2, 1.0), None, None)))
    with pytest.raises(SslvitError, match="sharing must be cyclic or prefix"):
        create_backbone(_cfg(sharing="left"))
    with pytest.raises(SslvitError, match="do not divide model.img_size"):
        create_backbone(_cfg(patch_sizes="5"))


@pytest.mark.slow
def test_superformer_pretraining_resumes_exactly(tmp_path, fmnist_dir):
    """6 steps straight == 3 steps + resume + 3 steps: the per-step sub-network comes from (seed, step)."""
    from ssl_vit.config import load_config
    from ssl_vit.runs import pretrain
    from tests.conftest import StopAt

    sets = [f"data.dataset=fmnist:{fmnist_dir}", "train.max_steps=6", "train.threads=1", "train.checkpoint_every=0"]
    pretrain(load_config("vitas_smoke", sets), tmp_path / "a", log=lambda m: None)
    pretrain(load_config("vitas_smoke", sets), tmp_path / "b", hooks=[StopAt(3)], log=lambda m: None)
    pretrain(load_config("vitas_smoke", sets), tmp_path / "b", resume=True, log=lambda m: None)
    a = torch.load(tmp_path / "a/checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
