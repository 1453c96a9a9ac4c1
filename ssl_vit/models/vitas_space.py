"""ViTAS search space: which sub-networks exist, how one is encoded, sampled, mutated and crossed over,
and which superformer channels a sub-network uses (``prefix`` or ``cyclic`` sharing).

A :class:`SubNet` is one architecture of the superformer (Su et al., "ViTAS: Vision Transformer
Architecture Search", ECCV 2022; search space as in the authors' ``config/search/*.yaml``: a patch size,
a token-embedding width, and per block a choice among heads x MLP width, or *identity*):

* ``patch_size`` -- one of the candidate patch sizes;
* ``embed_dim`` -- the token-embedding width ``w`` (all blocks share it, as in timm's ViT);
* ``blocks`` -- one entry per superformer block: ``(heads, mlp_ratio)``, or ``None`` for identity. The
  attention inner width equals ``w`` (timm's ``Attention``), so ``heads`` must divide ``w``.

Channel sharing (ViTAS sec. 3.2; the public code uses BCNet's left/right slicing instead, so this is our
reading of the paper): a width-``w`` candidate of a ``C``-channel layer uses channels

* ``prefix``: ``0 .. w-1`` -- channel 0 serves every candidate, channel ``C-1`` only the widest;
* ``cyclic``: ``(s(w) + 0 .. w-1) mod C`` with ``s(w)`` = the sum of the smaller candidate widths, i.e.
  the candidates are laid end to end around a ring of ``C`` channels. Over all candidates every channel is
  then used ``floor(S/C)`` or ``ceil(S/C)`` times (``S`` = sum of candidate widths): near-uniform.

Example::

    space = SearchSpace.from_config(ModelConfig(name="vitas_super", depth=4, img_size=28, patch_size=7))
    net = space.sample(random.Random(0))          # SubNet(patch_size=7, embed_dim=64, blocks=((4, 3.0), None, ...))
    idx = channel_indices(96, 64, space.embed_dims, "cyclic")   # (64,) long: 48..95, 0..15
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ssl_vit.core.lists import split_list
from ssl_vit.errors import SslvitError

BlockChoice = Optional[Tuple[int, float]]  # (heads, mlp_ratio) or None = identity


def parse_list(text: str, key: str, cast=int) -> Tuple:
    """'48,64' -> (48, 64) (one-line error naming the key otherwise)."""
    try:
        vals = tuple(cast(v) for v in split_list(str(text).replace(" ", "")))
    except ValueError:
        raise SslvitError(f"{key} must be comma-separated numbers like 2,4, got {text!r}") from None
    if not vals:
        raise SslvitError(f"{key} needs at least one value, e.g. {key}=2,4")
    return vals


def mlp_hidden(embed_dim: int, ratio: float) -> int:
    """Hidden width of timm's ``Mlp`` in ``Block(dim, mlp_ratio=ratio)``."""
    return int(embed_dim * ratio)


@dataclass(frozen=True)
class SubNet:
    patch_size: int
    embed_dim: int
    blocks: Tuple[BlockChoice, ...]

    @property
    def depth(self) -> int:
        return sum(b is not None for b in self.blocks)

    def executed(self, identity_shifting: bool) -> List[Tuple[int, int, float]]:
        """``[(superformer block index, heads, mlp_ratio), ...]`` in execution order.

        Identity shifting (ViTAS sec. 3.3, our reading): encodings that differ only in *where* the
        identities sit describe the same architecture (many-to-one). With shifting on, the real choices are
        moved to the front, in order, so block ``j`` of every depth-``n`` network runs on superformer block
        ``j`` (``[A, id, B, id] -> blocks 0, 1``); with it off each choice keeps its own position
        (``-> blocks 0, 2``)."""
        real = [(i, b) for i, b in enumerate(self.blocks) if b is not None]
        if identity_shifting:
            return [(j, b[0], b[1]) for j, (_, b) in enumerate(real)]
        return [(i, b[0], b[1]) for i, b in real]

    def canonical(self, identity_shifting: bool) -> "SubNet":
        """The encoding the superformer actually runs (identities at the end when shifting)."""
        if not identity_shifting:
            return self
        real = [b for b in self.blocks if b is not None]
        return SubNet(self.patch_size, self.embed_dim, tuple(real) + (None,) * (len(self.blocks) - len(real)))

    def key(self) -> str:
        """'p7-e64-4x3|id|2x2' (a stable string: cache key, table column)."""
        blocks = "|".join("id" if b is None else f"{b[0]}x{b[1]:g}" for b in self.blocks)
        return f"p{self.patch_size}-e{self.embed_dim}-{blocks}"

    def blocks_spec(self) -> str:
        """``model.vitas.blocks`` of the exported network: 'heads:ratio' per executed block."""
        return ",".join(f"{b[0]}:{b[1]:g}" for b in self.blocks if b is not None)

    def to_dict(self) -> Dict:
        return {
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "blocks": [None if b is None else [b[0], b[1]] for b in self.blocks],
        }

    @staticmethod
    def from_dict(d: Dict) -> "SubNet":
        return SubNet(
            int(d["patch_size"]),
            int(d["embed_dim"]),
            tuple(None if b is None else (int(b[0]), float(b[1])) for b in d["blocks"]),
        )


@dataclass(frozen=True)
class SearchSpace:
    embed_dims: Tuple[int, ...]
    heads: Tuple[int, ...]
    mlp_ratios: Tuple[float, ...]
    patch_sizes: Tuple[int, ...]
    depth: int
    min_depth: int
    id_prob: float = 0.25

    @staticmethod
    def from_config(model_cfg) -> "SearchSpace":
        v = model_cfg.vitas
        space = SearchSpace(
            embed_dims=tuple(sorted(set(parse_list(v.embed_dims, "model.vitas.embed_dims")))),
            heads=tuple(sorted(set(parse_list(v.heads, "model.vitas.heads")))),
            mlp_ratios=tuple(sorted(set(parse_list(v.mlp_ratios, "model.vitas.mlp_ratios", float)))),
            patch_sizes=tuple(
                sorted(set(parse_list(v.patch_sizes or str(model_cfg.patch_size), "model.vitas.patch_sizes")))
            ),
            depth=int(model_cfg.depth or 6),
            min_depth=min(int(v.min_depth), int(model_cfg.depth or 6)),
            id_prob=float(v.id_prob),
        )
        space.check(model_cfg.img_size)
        return space

    def check(self, img_size: int) -> None:
        bad = [p for p in self.patch_sizes if img_size % p]
        if bad:
            raise SslvitError(f"model.vitas.patch_sizes {bad} do not divide model.img_size={img_size}; use divisors")
        if not 1 <= self.min_depth <= self.depth:
            raise SslvitError(f"model.vitas.min_depth={self.min_depth} must be in [1, model.depth={self.depth}]")
        if not 0 <= self.id_prob < 1:
            raise SslvitError(f"model.vitas.id_prob={self.id_prob} must be in [0, 1)")
        for w in self.embed_dims:
            if not self.heads_for(w):
                raise SslvitError(
                    f"no candidate in model.vitas.heads={list(self.heads)} divides embed width {w}; "
                    f"add a divisor of {w}"
                )
            if w % 4:
                raise SslvitError(f"model.vitas.embed_dims: {w} is not a multiple of 4 (sin-cos position embedding)")

    # ---- widths -------------------------------------------------------------------------------------
    @property
    def max_embed(self) -> int:
        return self.embed_dims[-1]

    @property
    def max_hidden(self) -> int:
        return mlp_hidden(self.max_embed, self.mlp_ratios[-1])

    def hidden_widths(self) -> Tuple[int, ...]:
        """Every MLP hidden width a sub-network can have (the candidates of the fc1/fc2 channel sharing)."""
        return tuple(sorted({mlp_hidden(w, r) for w in self.embed_dims for r in self.mlp_ratios}))

    def heads_for(self, embed_dim: int) -> Tuple[int, ...]:
        return tuple(h for h in self.heads if embed_dim % h == 0)

    def contains(self, net: SubNet) -> bool:
        return (
            net.patch_size in self.patch_sizes
            and net.embed_dim in self.embed_dims
            and len(net.blocks) == self.depth
            and net.depth >= self.min_depth
            and all(
                b is None or (b[0] in self.heads_for(net.embed_dim) and b[1] in self.mlp_ratios) for b in net.blocks
            )
        )

    # ---- sampling -------------------------------------------------------------------------------------
    def _block(self, rng: random.Random, embed_dim: int) -> Tuple[int, float]:
        return rng.choice(self.heads_for(embed_dim)), rng.choice(self.mlp_ratios)

    def _fix_depth(self, blocks: List[BlockChoice], rng: random.Random, embed_dim: int) -> List[BlockChoice]:
        ids = [i for i, b in enumerate(blocks) if b is None]
        rng.shuffle(ids)
        while sum(b is not None for b in blocks) < self.min_depth:
            blocks[ids.pop()] = self._block(rng, embed_dim)
        return blocks

    def sample(self, rng: random.Random) -> SubNet:
        """Uniform over choices; each block is identity with probability ``id_prob`` (at least ``min_depth`` real)."""
        w = rng.choice(self.embed_dims)
        p = rng.choice(self.patch_sizes)
        blocks = [None if rng.random() < self.id_prob else self._block(rng, w) for _ in range(self.depth)]
        return SubNet(p, w, tuple(self._fix_depth(blocks, rng, w)))

    def largest(self) -> SubNet:
        w = self.max_embed
        return SubNet(self.patch_sizes[0], w, ((self.heads_for(w)[-1], self.mlp_ratios[-1]),) * self.depth)

    def smallest(self) -> SubNet:
        w = self.embed_dims[0]
        blocks = ((self.heads_for(w)[0], self.mlp_ratios[0]),) * self.min_depth + (None,) * (
            self.depth - self.min_depth
        )
        return SubNet(self.patch_sizes[-1], w, blocks)

    def mutate(self, net: SubNet, rng: random.Random, prob: float) -> SubNet:
        """Each gene (patch, width, every block) is re-drawn with probability ``prob``."""
        p = rng.choice(self.patch_sizes) if rng.random() < prob else net.patch_size
        w = rng.choice(self.embed_dims) if rng.random() < prob else net.embed_dim
        blocks = []
        for b in net.blocks:
            if rng.random() < prob:
                b = None if rng.random() < self.id_prob else self._block(rng, w)
            elif b is not None and w % b[0]:  # width changed under this block's heads
                b = (rng.choice(self.heads_for(w)), b[1])
            blocks.append(b)
        return SubNet(p, w, tuple(self._fix_depth(blocks, rng, w)))

    def crossover(self, a: SubNet, b: SubNet, rng: random.Random) -> SubNet:
        """Uniform crossover, gene by gene; heads that do not divide the child's width are re-drawn."""
        p = rng.choice((a.patch_size, b.patch_size))
        w = rng.choice((a.embed_dim, b.embed_dim))
        blocks = []
        for x, y in zip(a.blocks, b.blocks):
            c = rng.choice((x, y))
            if c is not None and w % c[0]:
                c = (rng.choice(self.heads_for(w)), c[1])
            blocks.append(c)
        return SubNet(p, w, tuple(self._fix_depth(blocks, rng, w)))


# ---- channel sharing ------------------------------------------------------------------------------------
def channel_indices(total: int, width: int, candidates: Sequence[int], mode: str) -> torch.Tensor:
    """(width,) long: the channels of a ``total``-channel layer that a width-``width`` candidate uses."""
    if width > total or width not in candidates:
        raise SslvitError(f"width {width} is not a candidate ({sorted(candidates)}) of a {total}-channel layer")
    if mode == "prefix":
        return torch.arange(width)
    if mode == "cyclic":
        start = sum(c for c in sorted(set(candidates)) if c < width) % total
        return (start + torch.arange(width)) % total
    raise SslvitError(f"model.vitas.sharing must be cyclic or prefix, not '{mode}'")


def channel_usage(total: int, candidates: Sequence[int], mode: str) -> torch.Tensor:
    """(total,) how many of the candidate widths use each channel (the ViTAS sec. 3.2 balance)."""
    use = torch.zeros(total, dtype=torch.long)
    for w in sorted(set(candidates)):
        use[channel_indices(total, w, candidates, mode)] += 1
    return use
