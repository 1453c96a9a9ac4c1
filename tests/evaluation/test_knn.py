import torch
import torch.nn.functional as F

from ssl_vit.evaluation.knn import knn_predict, knn_top1


def _brute_force(train, labels, test, k, t, n_cls):
    sims = F.normalize(test, dim=1) @ F.normalize(train, dim=1).t()
    top, idx = sims.topk(k, dim=1)
    votes = torch.zeros(test.shape[0], n_cls).scatter_add_(1, labels[idx], (top / t).exp())
    return votes.argmax(1)


def test_faiss_knn_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(300, 16, generator=g), torch.randn(50, 16, generator=g)
    labels = torch.randint(0, 5, (300,), generator=g)
    assert torch.equal(knn_predict(train, labels, test, 20, 0.07, 5), _brute_force(train, labels, test, 20, 0.07, 5))


def test_separable_clusters_give_100_percent():
    g = torch.Generator().manual_seed(0)
    centers = torch.eye(4, 8) * 10
    lab_tr, lab_te = torch.arange(200) % 4, torch.arange(40) % 4
    tr = centers[lab_tr] + torch.randn(200, 8, generator=g)
    te = centers[lab_te] + torch.randn(40, 8, generator=g)
    assert knn_top1(tr, lab_tr, te, lab_te) == 100.0
