import os
import tempfile

import pytest

from ssl_vit.core.input_spec import InputSpec

# Evaluation commands cache features under $SSLVIT_CACHE_DIR; keep the tests' entries out of ~/.cache.
os.environ.setdefault("SSLVIT_CACHE_DIR", tempfile.mkdtemp(prefix="sslvit-test-cache-"))


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A tiny random backbone file for the eval commands (bad data must fail before it matters)."""
    from ssl_vit.checkpoints import save_backbone
    from ssl_vit.config import ModelConfig, to_dict
    from ssl_vit.models import create_backbone

    cfg = ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1)
    path = tmp_path_factory.mktemp("bb") / "b.safetensors"
    save_backbone(path, create_backbone(cfg).state_dict(), to_dict(cfg), InputSpec(28, 1, (0.3,), (0.3,)))
    return path
