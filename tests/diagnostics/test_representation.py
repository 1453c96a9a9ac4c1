"""representation.py: RankMe, feature std, token diversity, attention probabilities and entropy."""

import math

import pytest
import torch
from timm.layers import Attention

from ssl_vit.diagnostics.representation import (
    attention_entropy,
    attention_probs,
    feature_std,
    rankme,
    token_diversity,
)


def _orthonormal(n, k, g):
    q, _ = torch.linalg.qr(torch.randn(n, k, generator=g))
    return q  # (n, k), orthonormal columns


@pytest.mark.parametrize("k", [1, 5, 32])
def test_rankme_of_a_rank_k_matrix_is_k(k):
    g = torch.Generator().manual_seed(k)
    z = _orthonormal(256, k, g) @ _orthonormal(64, k, g).T * 3.0  # (256, 64), k equal singular values
    assert rankme(z) == pytest.approx(k, rel=1e-3)
    # unequal singular values: still a rank-k matrix, RankMe <= k and close to it
    r = rankme(torch.randn(256, k, generator=g) @ torch.randn(k, 64, generator=g))
    assert 0.6 * k <= r <= k + 1e-3


def test_rankme_of_full_rank_noise_is_near_full():
    z = torch.randn(1024, 32, generator=torch.Generator().manual_seed(0))
    assert 28 < rankme(z) <= 32


def test_feature_std_collapse_and_isotropic():
    g = torch.Generator().manual_seed(0)
    assert feature_std(torch.ones(64, 16) + 1e-9 * torch.randn(64, 16, generator=g)) < 1e-6
    d = 128
    assert feature_std(torch.randn(4096, d, generator=g)) == pytest.approx(1 / math.sqrt(d), rel=0.05)


def test_token_diversity_identical_and_orthogonal_tokens():
    g = torch.Generator().manual_seed(0)
    same = torch.randn(3, 1, 32, generator=g).expand(3, 10, 32)  # every token identical
    assert torch.allclose(token_diversity(same, reduction="none"), torch.ones(3), atol=1e-5)
    assert token_diversity(-same) == pytest.approx(1.0, abs=1e-5)  # |cos|: sign does not matter
    ortho = torch.eye(16)[:10].unsqueeze(0)  # 10 orthogonal tokens
    assert token_diversity(ortho) == pytest.approx(0.0, abs=1e-6)
    rnd = torch.randn(2, 50, 512, generator=g)  # nearly orthogonal in high dimension
    assert token_diversity(rnd) < 0.06
    assert token_diversity(ortho[0]).shape == ()  # (N, D) works too
    with pytest.raises(ValueError):
        token_diversity(torch.randn(2, 1, 8))


@pytest.mark.parametrize("fused", [False, True])
def test_attention_probs_match_timm(fused):
    """Recomputed probabilities equal the ones timm's non-fused path builds, whichever path runs."""
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4, qkv_bias=True).eval()
    x = torch.randn(2, 9, 32)
    seen = {}
    attn.fused_attn = False
    h = attn.attn_drop.register_forward_hook(lambda m, a, o: seen.setdefault("p", o.detach()))
    ref_out = attn(x)
    h.remove()
    attn.fused_attn = fused
    assert torch.allclose(attn(x), ref_out, atol=1e-5)
    probs = attention_probs(attn, x)
    assert probs.shape == (2, 4, 9, 9)
    assert torch.allclose(probs, seen["p"], atol=1e-6)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 4, 9), atol=1e-6)


def test_attention_entropy_bounds():
    uniform = torch.full((2, 3, 8, 8), 1 / 8)
    assert attention_entropy(uniform) == pytest.approx(1.0, abs=1e-6)
    assert attention_entropy(uniform, normalize=False) == pytest.approx(math.log(8), abs=1e-5)
    one_hot = torch.eye(8).expand(2, 3, 8, 8)
    assert attention_entropy(one_hot) == pytest.approx(0.0, abs=1e-6)
    assert attention_probs(torch.nn.Linear(4, 4), torch.randn(1, 3, 4)) is None  # not an attention module
