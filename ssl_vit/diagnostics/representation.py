"""Representation health: RankMe, feature std (collapse), patch-token diversity, attention entropy.

* **RankMe** -- Garrido, Balestriero, Najman, LeCun 2023, "RankMe: Assessing the Downstream
  Performance of Pretrained Self-Supervised Representations by Their Rank", sec. 3, eq. (1): the
  exponential of the entropy of the normalised singular values of a batch of embeddings ``(N, D)``,
  a smooth effective rank in ``[1, min(N, D)]``; a falling RankMe is dimensional collapse.
* **Feature std** -- Chen & He 2021, "Exploring Simple Siamese Representation Learning" (SimSiam),
  sec. 4.1: mean over dimensions of the per-dimension std of the L2-normalised embeddings ``(N, D)``;
  0 means complete collapse, ``1/sqrt(D)`` an isotropic Gaussian (lightly's ``std_of_l2_normalized``).
* **Token diversity** -- Wang et al. 2022, "Scaled ReLU Matters for Training Vision Transformers",
  sec. 3 (patch-token similarity): mean pairwise ``|cos|`` between the patch tokens of one image,
  tokens ``(B, N, D)`` -> ``(B,)``. 1 = all tokens identical (no diversity, over-smoothing), ~0 =
  mutually orthogonal tokens. Higher is worse despite the name (kept for the tag
  ``diag/token_diversity``). Reused by the conv-stem experiments: import it from here.
* **Attention entropy** -- Zhai et al. 2023, "Stabilizing Transformer Training by Preventing
  Attention Entropy Collapse", sec. 3: mean entropy of each query's attention distribution per block,
  here divided by ``log N`` (1 = uniform attention, 0 = each query attends to one token); entropy
  collapse accompanies training instability.
* **Max attention logit** -- Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
  training instabilities", sec. 3.1 (attention logit growth, after Dehghani et al. 2023): the largest
  pre-softmax logit ``q . k / sqrt(d)`` per block over the probe images, heads, queries and keys. Its
  growth makes the softmax one-hot (entropy collapse); qk-layernorm (``model.qk_norm``) bounds it.

The hook reads the last step's CLS features (``model.last_features``, ``(2B, D)``) and, on diag
steps only, captures the first ``diag.probe_images`` images' tokens from the training forward with
forward hooks (final norm output ``(n, 1+N, D)``, patch-embedding output ``(n, N, D)`` and each block's
attention input ``(n, 1+N, D)``), so no extra forward pass runs. Attention probabilities are recomputed
from the captured attention input (``softmax(q k^T / sqrt(d))`` with the block's own ``qkv`` weights),
which works with fused attention too, where PyTorch never materialises them.

Tags: ``diag/rankme``, ``diag/feature_std``, ``diag/token_diversity`` (final tokens),
``diag/token_diversity/patch_embed`` (stem output), ``diag/attn_entropy/block_<i>``,
``diag/attn_logit_max/block_<i>``.

Example::

    z = torch.randn(512, 64) @ torch.randn(64, 128)    # rank 64
    rankme(z)                                          # ~ 50-64
    token_diversity(torch.ones(2, 16, 8))              # tensor([1., 1.])
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssl_vit.diagnostics.spikes import is_diag_step
from ssl_vit.engine.hooks import Hook, RunState


@torch.no_grad()
def rankme(z: torch.Tensor, eps: float = 1e-7) -> float:
    """Effective rank of embeddings ``(N, D)``: exp(entropy(sigma / ||sigma||_1)), in [1, min(N, D)]."""
    # written out: RankMe is two lines on top of torch.linalg.svdvals and no installed library has it
    s = torch.linalg.svdvals(z.float())  # (min(N, D),)
    p = s / s.sum().clamp_min(eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def feature_std(z: torch.Tensor) -> float:
    """Mean per-dimension std of L2-normalised embeddings ``(N, D)`` (SimSiam's collapse measure)."""
    from lightly.utils.debug import std_of_l2_normalized  # here: lightly.utils.debug imports torchvision

    return float(std_of_l2_normalized(z.float()))


@torch.no_grad()
def token_diversity(tokens: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean pairwise |cosine| between distinct tokens of each image.

    tokens ``(B, N, D)`` (or ``(N, D)`` for one image), N >= 2 -> ``(B,)`` with ``reduction='none'``,
    else a 0-d tensor (mean over images). 1 for identical tokens, ~0 for orthogonal ones.
    """
    # hand-written: no library exposes this measure (it is a Gram matrix of normalised tokens)
    if tokens.dim() == 2:
        tokens = tokens.unsqueeze(0)
    n = tokens.shape[1]
    if n < 2:
        raise ValueError(f"token_diversity needs >= 2 tokens per image, got {n}")
    t = F.normalize(tokens.float(), dim=-1)
    gram = (t @ t.transpose(1, 2)).abs()  # (B, N, N)
    off = (gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)) / (n * (n - 1))
    return off if reduction == "none" else off.mean()


@torch.no_grad()
def attention_logits(attn: nn.Module, x: torch.Tensor) -> Optional[torch.Tensor]:
    """Pre-softmax attention logits ``q . k / sqrt(d)`` of a timm ``Attention`` for its input ``x`` ``(B, N, C)``
    -> ``(B, H, N, N)`` float32 (after ``q_norm`` / ``k_norm``, as the module computes them).

    Recomputed from the module's own ``qkv`` / ``q_norm`` / ``k_norm`` (timm does not expose them, and its
    fused path never builds them); None for attention modules without that layout.
    """
    if not all(hasattr(attn, a) for a in ("qkv", "num_heads", "head_dim", "scale")):
        return None
    B, N, _ = x.shape
    w = attn.qkv
    qkv = F.linear(x.to(w.weight.dtype), w.weight, w.bias)
    qkv = qkv.reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    q, k = attn.q_norm(q), attn.k_norm(k)
    return ((q * attn.scale) @ k.transpose(-2, -1)).float()


@torch.no_grad()
def attention_probs(attn: nn.Module, x: torch.Tensor) -> Optional[torch.Tensor]:
    """Attention probabilities ``softmax(attention_logits)`` ``(B, H, N, N)`` (None: see :func:`attention_logits`)."""
    logits = attention_logits(attn, x)
    return None if logits is None else logits.softmax(-1)


@torch.no_grad()
def max_attention_logit(logits: torch.Tensor) -> float:
    """The largest attention logit of ``(B, H, N, N)`` logits (Wortsman et al. 2023, sec. 3.1)."""
    return float(logits.max())


@torch.no_grad()
def attention_entropy(probs: torch.Tensor, normalize: bool = True) -> float:
    """Mean entropy of attention rows ``(B, H, N, N)`` (divided by log N when ``normalize``)."""
    n = probs.shape[-1]
    ent = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
    return float(ent / torch.log(torch.tensor(float(n)))) if normalize and n > 1 else float(ent)


class _Capture:
    """Forward hooks that keep the first ``n`` images' activations of one forward pass, then detach."""

    def __init__(self, backbone: nn.Module, n: int):
        self.n, self.out, self.handles = n, {}, []
        mods = {"norm": getattr(backbone, "norm", None), "patch_embed": getattr(backbone, "patch_embed", None)}
        for i, blk in enumerate(getattr(backbone, "blocks", [])):
            if hasattr(blk, "attn"):
                mods[f"attn_in/{i}"] = blk.attn
        for key, mod in mods.items():
            if isinstance(mod, nn.Module):
                self.handles.append(mod.register_forward_hook(self._hook(key, key.startswith("attn_in"))))

    def _hook(self, key: str, want_input: bool):
        def fn(module, args, output):
            t = args[0] if want_input else output
            if isinstance(t, torch.Tensor) and key not in self.out:  # the first forward only
                self.out[key] = t[: self.n].detach()

        return fn

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


class RepresentationHook(Hook):
    name = "diag_representation"

    def __init__(self, cfg):
        self.cfg = cfg
        self.capture: Optional[_Capture] = None

    def _arm(self, run: RunState) -> None:
        if self.capture is None and run.ctx.is_main:
            self.capture = _Capture(run.model.backbone, self.cfg.diag.probe_images)

    def on_start(self, run: RunState) -> None:
        import lightly.utils.debug  # noqa: F401  (~1 s of imports: pay it at start, not in a training step)

        if run.step < run.total_steps and is_diag_step(run, run.step):
            self._arm(run)

    def after_backward(self, run: RunState, step: int) -> None:
        if self.capture is not None and not is_diag_step(run, step):  # e.g. armed before a skipped step
            self.capture.remove()
            self.capture = None
        return None

    def after_step(self, run: RunState, step: int) -> None:
        if is_diag_step(run, step) and run.ctx.is_main:
            run.record.add(self.measure(run))
        if self.capture is not None:
            self.capture.remove()
            self.capture = None
        if step + 1 < run.total_steps and is_diag_step(run, step + 1):
            self._arm(run)

    def on_end(self, run: RunState) -> None:
        if self.capture is not None:
            self.capture.remove()
            self.capture = None

    @torch.no_grad()
    def measure(self, run: RunState) -> Dict[str, float]:
        vals: Dict[str, float] = {}
        feats = run.model.last_features
        if feats is not None and feats.shape[0] >= 2:
            vals["diag/rankme"] = rankme(feats)
            vals["diag/feature_std"] = feature_std(feats)
        got = self.capture.out if self.capture is not None else {}
        bb = run.model.backbone
        prefix = int(getattr(bb, "num_prefix_tokens", 1))
        if "norm" in got and got["norm"].dim() == 3 and got["norm"].shape[1] - prefix >= 2:
            vals["diag/token_diversity"] = float(token_diversity(got["norm"][:, prefix:]))
        pe = got.get("patch_embed")
        if pe is not None and pe.dim() == 3 and pe.shape[1] >= 2:
            vals["diag/token_diversity/patch_embed"] = float(token_diversity(pe))
        blocks: List[nn.Module] = list(getattr(bb, "blocks", []))
        for i, blk in enumerate(blocks):
            x = got.get(f"attn_in/{i}")
            logits = attention_logits(blk.attn, x) if x is not None else None
            if logits is not None:
                vals[f"diag/attn_entropy/block_{i}"] = attention_entropy(logits.softmax(-1))
                vals[f"diag/attn_logit_max/block_{i}"] = max_attention_logit(logits)
        return vals
