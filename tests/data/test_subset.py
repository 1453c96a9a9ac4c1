"""Fixed training subsets from the dataset spec: `fmnist?subset=<n>&subset_seed=<s>`."""
import pytest
import torch

from ssl_vit.data.specs import load_dataset
from ssl_vit.errors import SslvitError


def test_fixed_subset_of_the_train_split_only(fmnist_dir):
    full = load_dataset(f"fmnist:{fmnist_dir}", "train")
    a = load_dataset(f"fmnist:{fmnist_dir}?subset=100&subset_seed=0", "train")
    b = load_dataset(f"fmnist:{fmnist_dir}?subset=100&subset_seed=0", "train")
    c = load_dataset(f"fmnist:{fmnist_dir}?subset=100&subset_seed=1", "train")
    assert len(a) == 100 and torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    # every kept image is one of the full split's, with its label
    rows = {bytes(img.flatten().tolist()): int(t) for img, t in zip(full.images, full.targets)}
    assert all(rows[bytes(img.flatten().tolist())] == int(t) for img, t in zip(a.images, a.targets))
    test = load_dataset(f"fmnist:{fmnist_dir}?subset=100", "test")
    assert len(test) == len(load_dataset(f"fmnist:{fmnist_dir}", "test"))


def test_subset_larger_than_the_split_is_an_error(fmnist_dir):
    with pytest.raises(SslvitError, match="subset=100000 must be in 1..512"):
        load_dataset(f"fmnist:{fmnist_dir}?subset=100000", "train")
