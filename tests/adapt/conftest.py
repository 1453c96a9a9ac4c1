"""A tiny ViT (embed 32, depth 2, 28 px, patch 7: a 4x4 grid + CLS) for the adaptation tests."""

import pytest
import torch

from ssl_vit.config.schema import ModelConfig

TINY = ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=2, num_heads=2)


@pytest.fixture()
def tiny_vit():
    from ssl_vit.models import create_backbone

    torch.manual_seed(0)
    return create_backbone(TINY).eval()


@pytest.fixture()
def images():
    return torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
