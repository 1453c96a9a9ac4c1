import math

import torch

from ssl_vit.methods.heads import mocov3_predictor, mocov3_projector
from ssl_vit.methods.losses import contrastive_loss


def _hand_ctr(q, k, tau):
    """Plain-Python InfoNCE: -mean_i log softmax_j(q_i . k_j / tau)[i] * 2 tau."""
    qn = [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in q]
    kn = [[v / math.sqrt(sum(u * u for u in r)) for v in r] for r in k]
    total = 0.0
    for i, qi in enumerate(qn):
        logits = [sum(a * b for a, b in zip(qi, kj)) / tau for kj in kn]
        lse = math.log(sum(math.exp(x) for x in logits))
        total += lse - logits[i]
    return total / len(qn) * 2 * tau


def test_loss_matches_hand_computation_3x4():
    q = [[1.0, 0.0, 2.0, -1.0], [0.5, 1.5, 0.0, 0.0], [-1.0, 1.0, 1.0, 3.0]]
    k = [[0.9, 0.1, 2.1, -0.8], [0.0, 2.0, 0.2, 0.1], [-0.5, 1.0, 0.5, 2.0]]
    for tau in (0.2, 1.0):
        got = contrastive_loss(torch.tensor(q), torch.tensor(k), tau).item()
        assert abs(got - _hand_ctr(q, k, tau)) < 1e-5


def test_loss_gathered_keys_offset_labels():
    """Rank 1 of 2: positives sit at index B + i of the gathered keys."""
    torch.manual_seed(0)
    q, k_local = torch.randn(3, 4), torch.randn(3, 4)
    k_other = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)  # other rank's keys arrive normalised
    got = contrastive_loss(q, k_local, 0.2, gather=lambda k: torch.cat([k_other, k]), rank=1)
    logits = (
        torch.nn.functional.normalize(q, dim=1)
        @ torch.nn.functional.normalize(torch.cat([k_other, k_local]), dim=1).t()
        / 0.2
    )
    ref = torch.nn.functional.cross_entropy(logits, torch.arange(3) + 3) * 0.4
    assert torch.allclose(got, ref)


def test_heads_structure_matches_mocov3():
    proj, pred = mocov3_projector(32, 64, 16), mocov3_predictor(16, 64, 16)
    lin = [m for m in proj.modules() if isinstance(m, torch.nn.Linear)]
    bns = [m for m in proj.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(lin) == 3 and all(m.bias is None for m in lin)
    assert [b.affine for b in bns] == [True, True, False]
    assert [b.affine for b in pred.modules() if isinstance(b, torch.nn.BatchNorm1d)] == [True, False]
    assert proj(torch.randn(5, 32)).shape == (5, 16) and pred(torch.randn(5, 16)).shape == (5, 16)
