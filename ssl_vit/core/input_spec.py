"""What a backbone takes as input: :class:`InputSpec` (image size, channels, normalisation).

It travels with the backbone (checkpoint metadata ``data_config``, timm ``pretrained_cfg`` style), so a
Fashion-MNIST backbone can be evaluated on CIFAR (RGB -> grey, 32 -> 28 px) and vice versa. In files it is
the plain mapping of :meth:`InputSpec.to_dict`::

    {"img_size": 28, "in_chans": 1, "mean": [0.286], "std": [0.353]}

(Not to be confused with the ``data`` section of the config, :class:`~ssl_vit.config.schema.DataConfig`,
which names the *dataset*.)

Example::

    spec = InputSpec(img_size=28, in_chans=1, mean=(0.286,), std=(0.353,))
    spec.to_dict()                       # the checkpoint's data_config
    InputSpec.from_dict(spec.to_dict()) == spec
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Mapping, Tuple


@dataclass(frozen=True)
class InputSpec:
    img_size: int  # square side in pixels the backbone runs at
    in_chans: int  # 1 (grey) or 3 (RGB)
    mean: Tuple[float, ...]  # per-channel mean of [0, 1] pixels (1 or in_chans values)
    std: Tuple[float, ...]  # per-channel std (1 or in_chans values)

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(self.mean))
        object.__setattr__(self, "std", tuple(self.std))

    @classmethod
    def from_dict(cls, d: Mapping) -> "InputSpec":
        """From the checkpoint mapping (``img_size``, ``in_chans``, ``mean``, ``std``); other keys are ignored."""
        return cls(d["img_size"], d["in_chans"], tuple(d["mean"]), tuple(d["std"]))

    def to_dict(self) -> Dict:
        """The checkpoint mapping: ``{"img_size", "in_chans", "mean": [...], "std": [...]}``."""
        return {"img_size": self.img_size, "in_chans": self.in_chans, "mean": list(self.mean), "std": list(self.std)}

    def resized(self, img_size: int) -> "InputSpec":
        """The same input at another square size."""
        return replace(self, img_size=img_size)

    def unnormalised(self) -> "InputSpec":
        """The same size and channels with mean 0 and std 1 (conversion to the backbone's input only)."""
        return replace(self, mean=(0.0,) * self.in_chans, std=(1.0,) * self.in_chans)
