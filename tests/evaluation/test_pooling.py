"""Probe features: DINO's concatenation of the last blocks' CLS tokens (+ patch-token mean), all after the
final norm, and the plain CLS path left untouched."""

import pytest
import torch

from ssl_vit.config import ModelConfig
from ssl_vit.errors import SslvitError
from ssl_vit.evaluation.pooling import pooling_name, probe_features
from ssl_vit.models import create_backbone


def _vit(depth=3):
    torch.manual_seed(0)
    return create_backbone(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, depth=depth)).eval()


def test_plain_cls_is_the_backbone_itself():
    vit = _vit()
    assert probe_features(vit) is vit and pooling_name() == "cls"


def test_last_blocks_and_patch_mean_by_hand():
    vit, x = _vit(), torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        f = probe_features(vit, n_last_blocks=2, avgpool_patchtokens=True)(x)
        # by hand: run the blocks one by one, norm each of the last two outputs
        t = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))  # (2, 1 + 16, 64)
        outs = []
        for blk in vit.blocks:
            t = blk(t)
            outs.append(vit.norm(t))
        want = torch.cat([outs[1][:, 0], outs[2][:, 0], outs[2][:, 1:].mean(1)], 1)
    assert f.shape == (2, 3 * 64) and torch.allclose(f, want, atol=1e-5)
    assert torch.allclose(f[:, 64:128], vit(x), atol=1e-5)  # last CLS = the usual feature
    assert pooling_name(2, True) == "cls_last2+avgpool"


def test_bad_settings_are_one_line_errors():
    with pytest.raises(SslvitError, match="n_last_blocks=5 but the backbone has 3 blocks"):
        probe_features(_vit(), n_last_blocks=5)
    with pytest.raises(SslvitError, match="forward_intermediates"):
        probe_features(torch.nn.Linear(4, 4), avgpool_patchtokens=True)
