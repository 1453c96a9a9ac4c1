"""The momentum (EMA) update of a momentum encoder, as one fused elementwise pass over all its tensors.

``update_momentum(model, model_ema, m)`` has the signature and the meaning of lightly's
``lightly.models.utils.update_momentum``: every parameter of ``model_ema`` becomes
``m * ema + (1 - m) * online``. lightly (1.6) runs that as two passes over the weights
(``_foreach_mul_`` then ``_foreach_add_``); here it is one ``torch._foreach_lerp_``
(``ema + (1 - m) * (online - ema)``): the same value up to float rounding (one ulp per update, checked
against lightly in ``tests/methods/test_momentum.py``), one read-modify-write of the momentum weights
instead of two, and on CUDA one fused multi-tensor kernel per dtype. A parameter that never trains
(the frozen patch projection, the fixed position embedding) stays bit-identical to its online twin,
which ``m * x + (1 - m) * x`` does not guarantee.

Like lightly and the official MoCo v3 (``_update_momentum_encoder``), only parameters are averaged: buffers
(BatchNorm running statistics of the momentum projector) are the momentum encoder's own, updated by its
own forward over the keys.

``model`` and ``model_ema`` are separate modules (the momentum copy is a ``deepcopy``); they are paired
parameter by parameter in ``named_parameters()`` order, and a pair whose names, shapes, dtypes or devices
differ is refused by name rather than averaged into the wrong tensor. Several modules can be updated in
one pass: ``update_momentum([backbone, projector], [momentum_backbone, momentum_projector], m)``.

Example::

    from ssl_vit.methods.momentum import update_momentum
    update_momentum(self.backbone, self.momentum_backbone, 0.99)
"""

from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch
import torch.nn as nn

Modules = Union[nn.Module, Sequence[nn.Module]]


def _as_list(mods: Modules) -> List[nn.Module]:
    return [mods] if isinstance(mods, nn.Module) else list(mods)


def paired_parameters(model: Modules, model_ema: Modules) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """(online, momentum) parameter lists of ``model`` / ``model_ema``, paired by name; a mismatch raises
    ``ValueError`` naming the first parameter that differs."""
    online, ema = [], []
    mods, mods_ema = _as_list(model), _as_list(model_ema)
    if len(mods) != len(mods_ema):
        raise ValueError(f"update_momentum: {len(mods)} online modules but {len(mods_ema)} momentum modules")
    for i, (a, b) in enumerate(zip(mods, mods_ema)):
        na, nb = list(a.named_parameters()), list(b.named_parameters())
        if len(na) != len(nb):
            raise ValueError(f"update_momentum: module {i} has {len(na)} parameters, its momentum copy {len(nb)}")
        for (name, p), (name_ema, q) in zip(na, nb):
            if name != name_ema or p.shape != q.shape or p.dtype != q.dtype or p.device != q.device:
                raise ValueError(
                    f"update_momentum: online '{name}' {tuple(p.shape)} {p.dtype} {p.device} does not "
                    f"match momentum '{name_ema}' {tuple(q.shape)} {q.dtype} {q.device}"
                )
            online.append(p)
            ema.append(q)
    return online, ema


@torch.no_grad()
def update_momentum(model: Modules, model_ema: Modules, m: float) -> None:
    """``ema <- m * ema + (1 - m) * online`` for every parameter pair, in one ``torch._foreach_lerp_``."""
    online, ema = paired_parameters(model, model_ema)
    if ema:
        torch._foreach_lerp_(ema, online, 1.0 - float(m))
