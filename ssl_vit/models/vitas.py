"""ViTAS superformer (Su et al., "ViTAS: Vision Transformer Architecture Search", ECCV 2022) on timm parts.

The superformer holds timm modules at the largest size of the search space
(:mod:`ssl_vit.models.vitas_space`): one ``PatchEmbed`` per candidate patch size, a CLS token, a position
embedding per patch grid, ``depth`` timm ``Block`` s (``D_max`` wide, MLP ``D_max * r_max``) and the final
``LayerNorm``. A forward runs the *active* sub-network (:meth:`ViTASSuperformer.set_subnet`) by slicing those
weights -- timm modules cannot run at a width other than their own, so the block forward is written out
here with ``F.linear`` / ``F.layer_norm`` on sliced weights (the same ops as timm's ``Block``; an exported
sub-network reproduces it to float precision).

Our reading of the paper where the public code (github.com/xiusu/ViTAS) has no counterpart:

* **Cyclic weight sharing** (sec. 3.2). With plain (``prefix``) slicing the first token-embedding channels
  serve every candidate width and the last ones only the widest, so channels are trained unequally and the
  weight-sharing assumption breaks. ``cyclic`` lays the candidate widths end to end around a ring of
  ``D_max`` channels (:func:`~ssl_vit.models.vitas_space.channel_indices`): width ``w`` uses channels
  ``(s(w) + 0..w-1) mod D_max``, ``s(w)`` = sum of the smaller candidate widths, so every channel serves
  ``floor`` or ``ceil(sum(widths) / D_max)`` candidates. We apply the same rule to every searched width:
  the token embedding (patch projection rows, CLS, position embedding, every LayerNorm, q/k/v rows and
  columns, attention projection, MLP fc1 columns / fc2 rows, the final norm) and, with the MLP hidden widths
  as candidates, the MLP hidden channels. The public code slices from the left or the right (BCNet).
* **Identity shifting** (sec. 3.3). Blocks may be identity; encodings that differ only in where the
  identities sit are one architecture (the many-to-one problem), yet would train different weight paths.
  With ``identity_shifting`` the real choices are shifted to the front in order (``[A, id, B, id]`` runs
  superformer blocks 0 and 1), so every depth-``n`` network uses blocks ``0..n-1`` -- one weight path per
  architecture (:meth:`~ssl_vit.models.vitas_space.SubNet.executed`). Without it, block ``i`` stays block ``i``.
* **Weak augmentation / regularisation** (sec. 3.4): a recipe matter (``recipes/vitas_fmnist.yaml``:
  milder crops and jitter, lower weight decay, small drop-path), not code.

Output: ``forward(x)`` -> ``(B, D_max)``: the sub-network's CLS feature after the final norm, scattered into
its ``w`` channels, zeros elsewhere. So the MoCo v3 projector (``Linear(D_max, ...)``) sees a fixed width and
its first layer is weight-shared the same way (zero inputs give those columns no gradient); cosine kNN is
unchanged by the zeros. ``forward_features(x)`` -> ``(B, w)`` in the sub-network's channel order, equal to
the exported network's output; ``forward_head`` does the scattering (timm's split: ``forward(x) ==
forward_head(forward_features(x))``). ``num_classes > 0`` (the ``sslvit_vitas_super`` timm entry only; sslvit
builds it with 0) adds a classifier ``head`` on the ``(B, D_max)`` features.

Training: :meth:`begin_step` picks the step's sub-network from ``(seed, step)`` alone (``uniform`` or the
``sandwich`` rule cycled over steps: largest, smallest, random), so a resumed run samples the same sequence
and MoCo v3's momentum encoder (a copy of this module) runs the same sub-network as the query encoder.

Example::

    cfg = ModelConfig(name="vitas_super", img_size=28, patch_size=7, in_chans=1, depth=4)
    sf = create_backbone(cfg)                                    # ViTASSuperformer, D_max = 96
    net = sf.space.sample(random.Random(0)); sf.set_subnet(net)
    f = sf(torch.randn(2, 1, 28, 28))                            # (2, 96), zeros outside net's channels
    vit = export_subnet(sf, net)                                  # timm VisionTransformer, inherited weights
    torch.allclose(vit(x), sf.forward_features(x), atol=1e-5)     # True
"""

from __future__ import annotations

import random
from dataclasses import replace
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm, PatchEmbed, to_2tuple, trunc_normal_
from timm.models import VisionTransformer
from timm.models.vision_transformer import Block

from ssl_vit.config.schema import ModelConfig, PatchEmbedConfig, ViTASConfig
from ssl_vit.core.seeding import derive_seed
from ssl_vit.errors import SslvitError
from ssl_vit.models import vit as vit_mod
from ssl_vit.models.registry import create_backbone, register_backbone
from ssl_vit.models.stepwise import PerStepBackbone
from ssl_vit.models.vitas_space import SearchSpace, SubNet, channel_indices, mlp_hidden, parse_list


class ViTASSuperformer(nn.Module, PerStepBackbone):
    def __init__(
        self,
        space: SearchSpace,
        img_size: int,
        in_chans: int,
        sharing: str = "cyclic",
        identity_shifting: bool = True,
        sampling: str = "uniform",
        pos_embed: str = "sincos",
        drop_path_rate: float = 0.0,
        patch_frozen: bool = True,
        num_classes: int = 0,
    ):
        super().__init__()
        if sharing not in ("cyclic", "prefix"):
            raise SslvitError(f"model.vitas.sharing must be cyclic or prefix, not '{sharing}'")
        if sampling not in ("uniform", "sandwich"):
            raise SslvitError(f"model.vitas.sampling must be uniform or sandwich, not '{sampling}'")
        if pos_embed not in ("sincos", "learned"):
            raise SslvitError(f"model.pos_embed must be sincos or learned, not '{pos_embed}'")
        self.space, self.sharing, self.identity_shifting, self.sampling = space, sharing, identity_shifting, sampling
        self.img_size, self.in_chans = img_size, in_chans
        D = self.embed_dim = self.num_features = space.max_embed
        norm = partial(LayerNorm, eps=1e-6)  # timm VisionTransformer's norm
        self.patch_embeds = nn.ModuleDict({f"p{p}": PatchEmbed(img_size, p, in_chans, D) for p in space.patch_sizes})
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embeds = nn.ParameterDict()
        for p in space.patch_sizes:
            grid = self.patch_embeds[f"p{p}"].grid_size
            pe = (
                vit_mod.sincos_pos_embed(grid, D)
                if pos_embed == "sincos"
                else torch.randn(1, 1 + grid[0] * grid[1], D) * 0.02
            )
            self.pos_embeds[f"p{p}"] = nn.Parameter(pe, requires_grad=pos_embed != "sincos")  # (1, 1+N, D)
        dpr = torch.linspace(0, drop_path_rate, space.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(
                D,
                space.heads_for(D)[-1],
                mlp_ratio=space.mlp_ratios[-1],
                qkv_bias=True,
                drop_path=dpr[i],
                norm_layer=norm,
            )
            for i in range(space.depth)
        )
        self.norm = norm(D)
        # MoCo v3 init (ssl_vit/models/vit.py), applied to the super-sized modules
        vit_mod.moco_init_linears_(self.blocks)
        nn.init.normal_(self.cls_token, std=1e-6)
        for p in space.patch_sizes:
            vit_mod.init_patch_projection_(self.patch_embeds[f"p{p}"].proj, in_chans, p, D)
            for prm in self.patch_embeds[f"p{p}"].parameters():
                prm.requires_grad_(not patch_frozen)
        self._idx: Dict[Tuple[str, int, str], torch.Tensor] = {}
        self.set_subnet(space.largest())
        self.global_pool, self.head_hidden_size = "token", D  # timm's model attributes
        self.reset_classifier(num_classes)  # last: no RNG drawn before it

    # ---- classifier (timm's API) ---------------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new ``Linear(D_max, num_classes)`` head (timm's ViT head init), or none for 0. Pooling is the
        CLS token only."""
        if global_pool not in (None, "token"):
            raise ValueError(f"vitas_super pools the CLS token only: global_pool must be 'token', not {global_pool!r}")
        self.num_classes = num_classes
        self.head = (
            nn.Linear(self.embed_dim, num_classes, device=self.cls_token.device) if num_classes > 0 else nn.Identity()
        )
        if num_classes > 0:
            trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    @staticmethod
    def from_config(cfg: ModelConfig, device_type: str = "cpu") -> "ViTASSuperformer":
        refuse_qk_norm(cfg)
        if cfg.stem != "patchify":
            raise SslvitError(f"vitas_super supports model.stem=patchify only, not '{cfg.stem}'")
        v = cfg.vitas
        sf = ViTASSuperformer(
            SearchSpace.from_config(cfg),
            cfg.img_size,
            cfg.in_chans,
            v.sharing,
            v.identity_shifting,
            v.sampling,
            cfg.pos_embed,
            cfg.drop_path_rate,
            cfg.patch_embed.frozen,
        )
        sf.model_cfg = cfg
        vit_mod.set_fused_attn(sf, cfg.fused_attn, device_type)
        return sf

    # ---- which sub-network runs ------------------------------------------------------------------------
    def set_subnet(self, net: SubNet) -> None:
        if not self.space.contains(net):
            raise SslvitError(
                f"sub-network {net.key()} is not in the search space; pick widths/heads/ratios from "
                f"model.vitas.* with at least {self.space.min_depth} real blocks"
            )
        self.subnet = net

    def subnet_for_step(self, step: int, seed: int) -> SubNet:
        """The training sub-network of ``step``: a pure function of ``(seed, step)``."""
        if self.sampling == "sandwich" and step % 3 < 2:
            return self.space.largest() if step % 3 == 0 else self.space.smallest()
        return self.space.sample(random.Random(derive_seed("vitas-subnet", seed, step)))

    def begin_step(self, step: int, seed: int) -> None:
        """Training: run :meth:`subnet_for_step` (the method calls this before each forward)."""
        self.set_subnet(self.subnet_for_step(step, seed))

    def channels(self, kind: str, width: int, device) -> torch.Tensor:
        """(width,) long indices of the embed ('e') or MLP-hidden ('h') channels a width uses (cached)."""
        key = (kind, width, str(device))
        if key not in self._idx:
            total, cands = (
                (self.embed_dim, self.space.embed_dims)
                if kind == "e"
                else (self.space.max_hidden, self.space.hidden_widths())
            )
            self._idx[key] = channel_indices(total, width, cands, self.sharing).to(device)
        return self._idx[key]

    # ---- forward ----------------------------------------------------------------------------------------
    def _attention(self, blk: Block, x: torch.Tensor, e: torch.Tensor, heads: int) -> torch.Tensor:
        B, N, w = x.shape
        a, D = blk.attn, self.embed_dim
        rows = torch.cat([e, e + D, e + 2 * D])  # q, k, v rows of the (3D, D) qkv weight
        qkv = F.linear(x, a.qkv.weight[rows][:, e], a.qkv.bias[rows])  # (B, N, 3w)
        q, k, v = qkv.reshape(B, N, 3, heads, w // heads).permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, N, w/h) each
        if a.fused_attn:
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=a.attn_drop.p if self.training else 0.0)
        else:  # timm's plain path
            attn = ((q * (w // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, h, N, N)
            o = a.attn_drop(attn) @ v
        o = o.transpose(1, 2).reshape(B, N, w)  # (B, N, w)
        return a.proj_drop(F.linear(o, a.proj.weight[e][:, e], a.proj.bias[e]))

    def _block(self, blk: Block, x: torch.Tensor, e: torch.Tensor, heads: int, ratio: float) -> torch.Tensor:
        w = x.shape[-1]
        hid = self.channels("h", mlp_hidden(w, ratio), x.device)
        y = F.layer_norm(x, (w,), blk.norm1.weight[e], blk.norm1.bias[e], blk.norm1.eps)
        x = x + blk.drop_path1(blk.ls1(self._attention(blk, y, e, heads)))
        y = F.layer_norm(x, (w,), blk.norm2.weight[e], blk.norm2.bias[e], blk.norm2.eps)
        m = blk.mlp
        y = m.drop1(m.act(F.linear(y, m.fc1.weight[hid][:, e], m.fc1.bias[hid])))  # (B, N, hidden)
        y = m.drop2(F.linear(m.norm(y), m.fc2.weight[e][:, hid], m.fc2.bias[e]))  # (B, N, w)
        return x + blk.drop_path2(blk.ls2(y))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, w) CLS token after the final norm, in the sub-network's channel order."""
        net = self.subnet
        e = self.channels("e", net.embed_dim, x.device)
        pe = self.patch_embeds[f"p{net.patch_size}"].proj
        t = F.conv2d(x, pe.weight[e], pe.bias[e], stride=net.patch_size)  # (B, w, H/p, W/p)
        t = t.flatten(2).transpose(1, 2)  # (B, N, w)
        cls = self.cls_token[..., e].expand(t.shape[0], -1, -1)  # (B, 1, w)
        t = torch.cat([cls, t], 1) + self.pos_embeds[f"p{net.patch_size}"][..., e]  # (B, 1+N, w)
        for i, heads, ratio in net.executed(self.identity_shifting):
            t = self._block(self.blocks[i], t, e, heads, ratio)
        t = F.layer_norm(t, (net.embed_dim,), self.norm.weight[e], self.norm.bias[e], self.norm.eps)
        return t[:, 0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, w) sub-network features -> (B, D_max) in its channels, zeros elsewhere [-> head: (B, classes)]."""
        e = self.channels("e", x.shape[1], x.device)
        x = x.new_zeros(x.shape[0], self.embed_dim).index_copy(1, e, x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, D_max): the sub-network's features in its channels, zeros elsewhere (num_classes=0)."""
        return self.forward_head(self.forward_features(x))

    # ---- export ------------------------------------------------------------------------------------------
    def subnet_model_config(self, net: SubNet) -> ModelConfig:
        """The ``vitas_subnet`` backbone config of ``net`` (a stand-alone timm VisionTransformer)."""
        base = getattr(
            self,
            "model_cfg",
            ModelConfig(name="vitas_super", img_size=self.img_size, in_chans=self.in_chans, depth=self.space.depth),
        )
        executed = net.executed(self.identity_shifting)
        return replace(
            base,
            name="vitas_subnet",
            patch_size=net.patch_size,
            embed_dim=net.embed_dim,
            depth=len(executed),
            num_heads=executed[0][1],
            mlp_ratio=executed[0][2],
            vitas=replace(base.vitas, blocks=net.blocks_spec()),
        )

    @torch.no_grad()
    def subnet_state_dict(self, net: SubNet) -> Dict[str, torch.Tensor]:
        """timm ``VisionTransformer`` keys -> the sub-network's slices of the superformer weights."""
        D, p = self.embed_dim, net.patch_size
        e = self.channels("e", net.embed_dim, self.cls_token.device)
        pe = self.patch_embeds[f"p{p}"].proj
        sd = {
            "cls_token": self.cls_token[..., e],
            "pos_embed": self.pos_embeds[f"p{p}"][..., e],
            "patch_embed.proj.weight": pe.weight[e],
            "patch_embed.proj.bias": pe.bias[e],
            "norm.weight": self.norm.weight[e],
            "norm.bias": self.norm.bias[e],
        }
        for j, (i, _heads, ratio) in enumerate(net.executed(self.identity_shifting)):
            b, pre = self.blocks[i], f"blocks.{j}."
            hid = self.channels("h", mlp_hidden(net.embed_dim, ratio), e.device)
            rows = torch.cat([e, e + D, e + 2 * D])
            sd.update(
                {
                    pre + "norm1.weight": b.norm1.weight[e],
                    pre + "norm1.bias": b.norm1.bias[e],
                    pre + "attn.qkv.weight": b.attn.qkv.weight[rows][:, e],
                    pre + "attn.qkv.bias": b.attn.qkv.bias[rows],
                    pre + "attn.proj.weight": b.attn.proj.weight[e][:, e],
                    pre + "attn.proj.bias": b.attn.proj.bias[e],
                    pre + "norm2.weight": b.norm2.weight[e],
                    pre + "norm2.bias": b.norm2.bias[e],
                    pre + "mlp.fc1.weight": b.mlp.fc1.weight[hid][:, e],
                    pre + "mlp.fc1.bias": b.mlp.fc1.bias[hid],
                    pre + "mlp.fc2.weight": b.mlp.fc2.weight[e][:, hid],
                    pre + "mlp.fc2.bias": b.mlp.fc2.bias[e],
                }
            )
        return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def export_subnet(sf: ViTASSuperformer, net: SubNet) -> VisionTransformer:
    """A stand-alone timm ``VisionTransformer`` (``vitas_subnet`` backbone) with ``net``'s inherited weights."""
    model = create_backbone(sf.subnet_model_config(net), sf.cls_token.device.type)
    model.load_state_dict(sf.subnet_state_dict(net), strict=True)
    return model.to(sf.cls_token.device)


def refuse_qk_norm(cfg: ModelConfig) -> None:
    """The superformer writes its attention out on sliced weights (and sub-networks must match it): no qk-norm."""
    if cfg.qk_norm:
        raise SslvitError(
            f"model.qk_norm is not available for {cfg.name} (its attention is sliced per sub-network); "
            f"use a vit_* backbone or set model.qk_norm=false"
        )


def parse_blocks(spec: str, key: str = "model.vitas.blocks") -> List[Tuple[int, float]]:
    """'4:3,2:2' -> [(4, 3.0), (2, 2.0)]."""
    out = []
    for item in [s for s in spec.replace(" ", "").split(",") if s]:
        try:
            h, r = item.split(":")
            out.append((int(h), float(r)))
        except ValueError:
            raise SslvitError(f"{key}: '{item}' is not 'heads:mlp_ratio' (e.g. {key}=4:3,2:2)") from None
    return out


def vitas_subnet(
    blocks: Sequence[Tuple[int, float]],
    embed_dim: int = 64,
    qk_norm: bool = False,
    proj_drop_rate: float = 0.0,
    attn_drop_rate: float = 0.0,
    fused_attn="auto",
    device_type: Optional[str] = None,
    device=None,
    dtype=None,
    **vit_args,
) -> VisionTransformer:
    """timm ``VisionTransformer`` with per-block heads / MLP ratios, ``blocks = [(heads, mlp_ratio), ...]``;
    every other argument as :func:`ssl_vit.models.vit.vision_transformer` (``depth`` / ``num_heads`` /
    ``mlp_ratio`` come from ``blocks``).

    timm's constructor takes one ``num_heads`` / ``mlp_ratio``; the network is built with the first block's
    and every other block is replaced by a timm ``Block`` of its own size, so it stays a VisionTransformer
    whose ``state_dict`` keys are timm's."""
    if qk_norm:
        raise ValueError(
            "qk_norm is not available for vitas_subnet (it must match the superformer's sliced "
            "attention); leave qk_norm=False"
        )
    bad = [h for h, _ in blocks if embed_dim % h]
    if bad:
        raise SslvitError(f"model.vitas.blocks heads {bad} do not divide model.embed_dim={embed_dim}")
    h0, r0 = blocks[0][0], float(blocks[0][1] or 4.0)
    model = vit_mod.vision_transformer(
        embed_dim=embed_dim,
        depth=len(blocks),
        num_heads=h0,
        mlp_ratio=r0,
        proj_drop_rate=proj_drop_rate,
        attn_drop_rate=attn_drop_rate,
        fused_attn=fused_attn,
        device_type=device_type,
        device=device,
        dtype=dtype,
        **vit_args,
    )
    for i, (h, r) in enumerate(blocks):
        if (h, r) != (h0, r0):
            old = model.blocks[i]
            drop_path = old.drop_path1.drop_prob if isinstance(old.drop_path1, DropPath) else 0.0
            blk = Block(
                embed_dim,
                h,
                mlp_ratio=r,
                qkv_bias=True,
                norm_layer=partial(type(old.norm1), eps=old.norm1.eps),
                proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=drop_path,
                device=device,
                dtype=dtype,
            )
            vit_mod.moco_init_linears_(blk)
            model.blocks[i] = blk
    vit_mod.set_fused_attn(model, fused_attn, vit_mod.runs_on(device_type, device))
    return model


def subnet_blocks(cfg: ModelConfig) -> Tuple[ModelConfig, List[Tuple[int, float]]]:
    """A ``vitas_subnet`` config -> (resolved config, ``[(heads, mlp_ratio)]`` per block): ``model.vitas.blocks``,
    else ``depth`` blocks of ``num_heads`` / ``mlp_ratio`` (``vit_micro`` sizes where unset)."""
    if cfg.depth and cfg.vitas.blocks and cfg.depth != len(parse_blocks(cfg.vitas.blocks)):
        raise SslvitError(
            f"model.depth={cfg.depth} but model.vitas.blocks lists {len(parse_blocks(cfg.vitas.blocks))} "
            f"blocks; make them agree"
        )
    cfg = resolve_subnet(cfg)
    return cfg, parse_blocks(cfg.vitas.blocks) or [(cfg.num_heads, cfg.mlp_ratio)] * cfg.depth


def build_vitas_subnet(cfg: ModelConfig, device_type: str = "cpu") -> VisionTransformer:
    """Model config -> :func:`vitas_subnet` backbone (``model.vitas.blocks``; ``num_classes=0``)."""
    refuse_qk_norm(cfg)
    cfg, specs = subnet_blocks(cfg)
    args = {k: v for k, v in vit_mod.vit_args(cfg).items() if k not in ("depth", "num_heads", "mlp_ratio", "qk_norm")}
    return vitas_subnet(specs, device_type=device_type, **args)


_VITAS = ViTASConfig()


def vitas_superformer(
    img_size=28,
    patch_size: int = 7,
    in_chans: int = 1,
    num_classes: int = 0,
    *,
    global_pool: str = "token",
    depth: int = 6,
    embed_dims=_VITAS.embed_dims,
    heads=_VITAS.heads,
    mlp_ratios=_VITAS.mlp_ratios,
    patch_sizes=_VITAS.patch_sizes,
    min_depth: int = _VITAS.min_depth,
    id_prob: float = _VITAS.id_prob,
    sharing: str = _VITAS.sharing,
    identity_shifting: bool = _VITAS.identity_shifting,
    sampling: str = _VITAS.sampling,
    pos_embed: str = "sincos",
    drop_path_rate: float = 0.0,
    patch_embed_frozen: bool = True,
    fused_attn="auto",
    device_type: Optional[str] = None,
) -> ViTASSuperformer:
    """:class:`ViTASSuperformer` from constructor arguments (``model.*`` / ``model.vitas.*`` names; the candidate
    lists as ``'48,64'`` or a sequence). Square images only; the CLS token is the only pooling."""
    size = to_2tuple(img_size)
    if size[0] != size[1]:
        raise ValueError(f"vitas_super takes square images only, got img_size={tuple(size)}")
    if global_pool != "token":
        raise ValueError(f"vitas_super pools the CLS token only: global_pool must be 'token', not {global_pool!r}")
    vitas = ViTASConfig(
        embed_dims=csv_list(embed_dims),
        heads=csv_list(heads),
        mlp_ratios=csv_list(mlp_ratios),
        patch_sizes=csv_list(patch_sizes),
        min_depth=min_depth,
        id_prob=id_prob,
        sharing=sharing,
        identity_shifting=identity_shifting,
        sampling=sampling,
    )
    cfg = ModelConfig(
        name="vitas_super",
        img_size=size[0],
        patch_size=patch_size,
        in_chans=in_chans,
        depth=depth,
        drop_path_rate=drop_path_rate,
        pos_embed=pos_embed,
        fused_attn=fused_attn,
        patch_embed=PatchEmbedConfig(frozen=patch_embed_frozen),
        vitas=vitas,
    )
    sf = ViTASSuperformer.from_config(cfg, device_type or "cpu")
    sf.reset_classifier(num_classes)
    return sf


def csv_list(values) -> str:
    """'48,64' or (48, 64) -> '48,64' (the ``model.vitas.*`` list format)."""
    return values if isinstance(values, str) else ",".join(str(v) for v in values)


def resolve_super(cfg: ModelConfig) -> ModelConfig:
    """Superformer sizes: the widest candidate, the most heads / largest MLP ratio (default depth: 6)."""
    depth = cfg.depth or 6
    space = SearchSpace.from_config(replace(cfg, depth=depth))
    return replace(
        cfg,
        embed_dim=space.max_embed,
        depth=depth,
        num_heads=space.heads_for(space.max_embed)[-1],
        mlp_ratio=space.mlp_ratios[-1],
    )


def resolve_subnet(cfg: ModelConfig) -> ModelConfig:
    """Sub-network sizes: depth and first block from ``model.vitas.blocks``; the rest as ``vit_micro``."""
    specs = parse_blocks(cfg.vitas.blocks)
    micro = vit_mod.resolve(replace(cfg, name="vit_micro"))
    if specs:
        return replace(cfg, embed_dim=micro.embed_dim, depth=len(specs), num_heads=specs[0][0], mlp_ratio=specs[0][1])
    return replace(micro, name=cfg.name)


register_backbone("vitas_super", ViTASSuperformer.from_config, resolve_super)
register_backbone("vitas_subnet", build_vitas_subnet, resolve_subnet)

__all__ = [
    "ViTASSuperformer",
    "build_vitas_subnet",
    "export_subnet",
    "parse_blocks",
    "parse_list",
    "csv_list",
    "subnet_blocks",
    "vitas_subnet",
    "vitas_superformer",
]
