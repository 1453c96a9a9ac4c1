"""The agent CNN of a ViT: multi-head self-attention re-expressed as convolutions, sharing the ViT's weights.

Paper: Zhang et al., "Bootstrapping ViTs: Towards Liberating Vision Transformers from Pre-training",
CVPR 2022, sec. 3.2 (the agent) and sec. 3.3 (bootstrapping); authors' code: zhfeing/Bootstrapping-ViTs-pytorch
(``vit_mutual/models/mutual/joint_model.py``). Read together, the construction is:

* A head of MHSA computes ``sum_j A[i, j] W_o^h (W_v^h x_j + b_v^h)``. If the attention of head ``h`` is
  the one-hot map "token ``i`` looks at the token at a fixed offset ``delta_h``", the head is a
  convolution whose kernel is zero except for the matrix ``W_o^h W_v^h`` (D x D) at position ``delta_h``.
  With ``H`` heads and ``k = ceil(sqrt(H))`` the offsets are the first ``H`` positions of a k x k kernel
  in raster order (as the authors' ``phi``), so the whole MHSA is ONE k x k convolution with kernel
  ``K[:, :, u, v] = W_o^{h(u,v)} W_v^{h(u,v)}`` (zero at unused positions) and bias
  ``b_o + sum_h W_o^h b_v^h``. ``W_q, W_k`` are not used by the agent (its "attention" is fixed).
  Offsets: kernel position ``(u, v)`` reads the token at ``(i + u - (k-1)//2, j + v - (k-1)//2)``
  (PyTorch's ``padding='same'`` convention; centred for odd ``k``, e.g. 2 heads -> k=2 -> offsets (0,0), (0,+1)).
  Tokens outside the grid are zero (zero padding); the folded value bias is added everywhere (the
  authors drop ``b_v``; at the border this is the only difference from one-hot attention).
* The MLP is applied per token, i.e. two 1 x 1 convolutions with the same ``fc1``/``fc2`` weights.
* LayerNorm -> BatchNorm2d: the agent has its own BN layers (norm1/norm2 per block, a final BN);
  pre-norm residual blocks exactly like the ViT's (``x + ls(conv(bn1(x)))``, ``x + ls(mlp(bn2(x)))``).
* Input: the ViT's own stem (``vit.patch_embed``: patchify or any conv stem mapping ``(B, C, H, W)`` to
  ``(B, N, D)`` tokens on ``patch_embed.grid_size``), tokens reshaped to a ``(B, D, gh, gw)`` map; no
  CLS token, no position embedding (the convolution's locality replaces it). The authors give the agent
  its own patch projection; sharing the stem keeps "any sslvit stem" working and is noted as a deviation.
* Output: final BN -> ReLU -> global average pool -> ``(B, D)`` features (the authors' head, without its
  Linear: classifiers live in the training method).

Modes (the paper's Table 1 "Shared" and "Joint"; in the authors' configs ``shared/`` builds this weight-
sharing agent, ``joint/`` trains a separate agent CNN next to the ViT):

* ``shared``: the agent's convolutions and 1 x 1 convs are built on the ViT's very ``nn.Parameter``
  objects (no copies): one optimizer step moves both networks. Own parameters: the BN layers only.
* ``joint``: the agent gets its own copy of the ViT's weights at construction (same initialisation) and
  from then on trains separately; networks interact only through the losses. (The authors' joint agent
  uses a dense 3 x 3 convolution; here the same head-offset structure is kept so both modes have the
  same architecture -- a deliberate simplification.)

Shapes: ``forward(x)`` with ``x`` ``(B, C, H, W)`` returns ``(features (B, D), maps)`` where ``maps`` is
a list with one ``(B, D, gh, gw)`` tensor per block (the hint targets).

Example::

    vit = create_backbone(ModelConfig(name="vit_micro", img_size=28, patch_size=7, in_chans=1))
    agent = BootstrapAgent(vit, mode="shared")
    feats, maps = agent(torch.randn(8, 1, 28, 28))      # (8, 64), 4 x (8, 64, 4, 4)
    assert agent.blocks[0].attn_conv.attn.qkv.weight is vit.blocks[0].attn.qkv.weight
"""

from __future__ import annotations

import copy
import math
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssl_vit.errors import SslvitError

MODES = ("shared", "joint")


def head_offsets(num_heads: int) -> List[Tuple[int, int]]:
    """(dy, dx) offset of each head: the first ``num_heads`` positions of a k x k kernel, raster order."""
    k = math.ceil(math.sqrt(num_heads))
    lo = (k - 1) // 2
    return [(h // k - lo, h % k - lo) for h in range(num_heads)]


class HeadOffsetConv(nn.Module):
    """A timm ``Attention`` as one k x k convolution (module docstring). Holds the attention module by
    reference, so its kernel is recomputed from the live ``qkv``/``proj`` weights at every call.

    ``(B, D, gh, gw) -> (B, D, gh, gw)``."""

    def __init__(self, attn: nn.Module):
        super().__init__()
        if not (hasattr(attn, "qkv") and hasattr(attn, "proj") and hasattr(attn, "num_heads")):
            raise SslvitError(
                f"the bootstrap agent needs timm Attention blocks (qkv, proj); got "
                f"{type(attn).__name__}; use a ViT backbone (model.name=vit_*)"
            )
        if not isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity) or getattr(attn, "gate", None) is not None:
            raise SslvitError("the bootstrap agent supports plain attention only (no scale_norm / gated attention)")
        self.attn = attn
        self.num_heads, self.head_dim = attn.num_heads, attn.head_dim
        self.k = math.ceil(math.sqrt(self.num_heads))

    def kernel(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> conv weight ``(D, D, k, k)`` and bias ``(D,)`` built from the attention's W_v, b_v, W_o, b_o."""
        H, d, k = self.num_heads, self.head_dim, self.k
        qkv, proj = self.attn.qkv, self.attn.proj
        A = H * d  # attention width
        D_in, D_out = qkv.in_features, proj.out_features
        w_v = qkv.weight[2 * A : 3 * A].view(H, d, D_in)  # (H, d, D_in): W_v^h
        w_o = proj.weight.view(D_out, H, d).transpose(0, 1)  # (H, D_out, d): W_o^h
        per_head = torch.bmm(w_o, w_v)  # (H, D_out, D_in): W_o^h W_v^h
        pad = per_head.new_zeros(k * k - H, D_out, D_in)
        weight = torch.cat([per_head, pad], 0).view(k, k, D_out, D_in).permute(2, 3, 0, 1)  # (D_out, D_in, k, k)
        bias = proj.bias if proj.bias is not None else per_head.new_zeros(D_out)
        if qkv.bias is not None:  # fold W_o^h b_v^h into the bias
            b_v = qkv.bias[2 * A : 3 * A].view(H, d, 1)  # (H, d, 1)
            bias = bias + torch.bmm(w_o, b_v).sum(0).squeeze(-1)  # (D_out,)
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.kernel()
        lo = (self.k - 1) // 2
        hi = self.k - 1 - lo
        x = F.pad(x, (lo, hi, lo, hi))  # zeros outside the grid
        return F.conv2d(x, weight, bias)


class TokenwiseMlpConv(nn.Module):
    """A timm ``Mlp`` (fc1 -> act -> fc2) as two 1 x 1 convolutions on the same weights.

    ``(B, D, gh, gw) -> (B, D, gh, gw)``."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        if not (isinstance(getattr(mlp, "fc1", None), nn.Linear) and isinstance(getattr(mlp, "fc2", None), nn.Linear)):
            raise SslvitError(f"the bootstrap agent needs a timm Mlp (fc1, fc2); got {type(mlp).__name__}")
        if not isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity):
            raise SslvitError("the bootstrap agent supports MLPs without an inner norm only")
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mlp
        x = F.conv2d(x, m.fc1.weight[:, :, None, None], m.fc1.bias)  # (B, hidden, gh, gw)
        x = m.drop1(m.act(x))
        x = F.conv2d(x, m.fc2.weight[:, :, None, None], m.fc2.bias)  # (B, D, gh, gw)
        return m.drop2(x)


def _channel_scale(ls: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm LayerScale (gamma over the last dim) applied to channels of a (B, D, h, w) map."""
    gamma = getattr(ls, "gamma", None)
    return x if gamma is None else x * gamma.view(1, -1, 1, 1)


class AgentBlock(nn.Module):
    """One ViT block as a pre-norm residual conv block with its own BatchNorms. ``(B, D, h, w)`` in and out."""

    def __init__(self, block: nn.Module, dim: int):
        super().__init__()
        self.attn_conv = HeadOffsetConv(block.attn)
        self.mlp_conv = TokenwiseMlpConv(block.mlp)
        self.norm1, self.norm2 = nn.BatchNorm2d(dim), nn.BatchNorm2d(dim)  # the agent's own (LN -> BN)
        self.ls1, self.ls2 = block.ls1, block.ls2  # shared LayerScale (Identity by default)
        self.drop_path1, self.drop_path2 = block.drop_path1, block.drop_path2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(_channel_scale(self.ls1, self.attn_conv(self.norm1(x))))
        return x + self.drop_path2(_channel_scale(self.ls2, self.mlp_conv(self.norm2(x))))


class BootstrapAgent(nn.Module):
    """The agent CNN of a timm ``VisionTransformer`` (module docstring): ``(B, C, H, W)`` ->
    ``((B, D) features, [(B, D, gh, gw)] * depth)``."""

    def __init__(self, vit: nn.Module, mode: str = "shared"):
        super().__init__()
        if mode not in MODES:
            raise SslvitError(f"unknown bootstrap mode '{mode}'; valid: {', '.join(MODES)}")
        for attr in ("patch_embed", "blocks", "embed_dim"):
            if not hasattr(vit, attr):
                raise SslvitError(
                    f"the bootstrap agent needs a ViT backbone (no '{attr}' on {type(vit).__name__}); "
                    f"use model.name=vit_*"
                )
        self.mode = mode
        src = vit if mode == "shared" else copy.deepcopy(vit)  # joint: own weights, same init
        dim = int(vit.embed_dim)
        self.patch_embed = src.patch_embed  # shared: the ViT's stem itself
        self.blocks = nn.ModuleList(AgentBlock(b, dim) for b in src.blocks)
        self.norm = nn.BatchNorm2d(dim)
        self.act = nn.ReLU()
        self.embed_dim = dim

    def grid(self, x: torch.Tensor) -> Tuple[int, int]:
        pe = self.patch_embed
        if hasattr(pe, "dynamic_feat_size"):
            return tuple(pe.dynamic_feat_size(x.shape[-2:]))
        return tuple(pe.grid_size)

    def forward_maps(self, x: torch.Tensor) -> List[torch.Tensor]:
        """``(B, C, H, W)`` -> per-block maps ``[(B, D, gh, gw)] * depth``."""
        t = self.patch_embed(x)
        if t.dim() == 3:  # (B, N, D) tokens
            gh, gw = self.grid(x)
            t = t.transpose(1, 2).reshape(t.shape[0], t.shape[2], gh, gw)  # (B, D, gh, gw)
        elif t.shape[1] != self.embed_dim:  # NHWC stem output
            t = t.permute(0, 3, 1, 2)
        maps = []
        for blk in self.blocks:
            t = blk(t)
            maps.append(t)
        return maps

    def head_features(self, last: torch.Tensor) -> torch.Tensor:
        """Last map ``(B, D, gh, gw)`` -> ``(B, D)``: final BN, ReLU, global average pool."""
        return self.act(self.norm(last)).mean((2, 3))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        maps = self.forward_maps(x)
        return self.head_features(maps[-1]), maps


def vit_features_and_tokens(vit: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """One ViT forward -> pooled features ``(B, D)`` (as ``vit(x)``) and every block's patch tokens
    ``[(B, N, D)] * depth`` (prefix tokens removed, before the final norm), via timm's ``forward_intermediates``."""
    final, tokens = vit.forward_intermediates(x, indices=len(vit.blocks), output_fmt="NLC", norm=False)
    return vit.forward_head(final), tokens
