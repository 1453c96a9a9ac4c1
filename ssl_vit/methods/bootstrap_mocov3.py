"""MoCo v3 with a bootstrap agent (``sslvit pretrain --set model.bootstrap.enabled=true``). New ground:
the bootstrapping paper (Zhang et al., CVPR 2022) is supervised only; this carries its agent and hints over
to MoCo v3's contrastive objective.

Per step, with ``x = cat(x1, x2)`` ``(2B, C, S, S)``::

    f, tokens   = ViT(x)                 # (2B, D), per-block patch tokens [(2B, N, D)]
    fa, maps    = agent(x)               # (2B, D), per-block maps [(2B, D, gh, gw)]  (BN over both views)
    q*  = predictor(projector(f*)),  qa* = agent_predictor(agent_projector(fa*))     # per view, (B, out)
    k*  = momentum ViT keys (the agent has no momentum copy)
    L = c * (ctr(q1, k2) + ctr(q2, k1)) + c * (ctr(qa1, k2) + ctr(qa2, k1)) + w(t) * hint(tokens, sg maps)

i.e. agent and ViT share the contrastive task (the same keys), the agent has its own projector/predictor
(as its own classifier in the supervised case), and the ViT learns from the agent's features through the
decaying hint loss. ``c`` is ``model.bootstrap.ce_weight`` (0.5 shared / 1 joint) and ``w`` the hint weight
(5 / 10, linear decay). No mutual distillation: there are no class logits to distil.

Example::

    model = BootstrapMoCoV3(vit, 64, MethodConfig(), BootstrapConfig(enabled=True))
    model.set_progress(step, total_steps)
    loss = model(x1, x2, m=0.99)
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ssl_vit.errors import SslvitError
from ssl_vit.methods.bootstrap_losses import hint_loss, hint_weight, weights_from_config
from ssl_vit.methods.heads import mocov3_predictor, mocov3_projector
from ssl_vit.methods.losses import contrastive_loss
from ssl_vit.methods.mocov3 import MoCoV3
from ssl_vit.models.bootstrap import BootstrapAgent, vit_features_and_tokens


class BootstrapMoCoV3(MoCoV3):
    def __init__(self, backbone: nn.Module, embed_dim: int, method_cfg, bootstrap_cfg):
        if method_cfg.local_crops:
            raise SslvitError(
                f"method.local_crops={method_cfg.local_crops}: multi-crop works with plain MoCo v3 "
                f"only, not with model.bootstrap.enabled=true; set method.local_crops=0"
            )
        super().__init__(
            backbone,
            embed_dim,
            method_cfg.proj_hidden_dim,
            method_cfg.pred_hidden_dim,
            method_cfg.out_dim,
            method_cfg.temperature,
        )
        self.bootstrap = bootstrap_cfg
        self.weights = weights_from_config(bootstrap_cfg)
        self.agent = BootstrapAgent(backbone, bootstrap_cfg.mode)
        self.agent_projector = mocov3_projector(embed_dim, method_cfg.proj_hidden_dim, method_cfg.out_dim)
        self.agent_predictor = mocov3_predictor(method_cfg.out_dim, method_cfg.pred_hidden_dim, method_cfg.out_dim)
        self.step, self.total_steps = 0, 1

    def chance_loss(self, global_batch: int):
        return None  # the hint term has no chance level

    def set_progress(self, step: int, total_steps: int) -> None:
        self.step, self.total_steps = step, total_steps

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, m: float) -> torch.Tensor:
        B = x1.shape[0]
        x = torch.cat([x1, x2], 0)  # (2B, C, H, W)
        f, tokens = vit_features_and_tokens(self.backbone, x)  # (2B, D), [(2B, N, D)]
        fa, maps = self.agent(x)  # (2B, D), [(2B, D, gh, gw)]
        q1, q2 = self.predictor(self.projector(f[:B])), self.predictor(self.projector(f[B:]))  # (B, out)
        qa1 = self.agent_predictor(self.agent_projector(fa[:B]))
        qa2 = self.agent_predictor(self.agent_projector(fa[B:]))
        with torch.no_grad():
            self.update_momentum(m)
            fk = self.momentum_backbone(x)  # (2B, D)
            k1, k2 = self.momentum_projector(fk[:B]), self.momentum_projector(fk[B:])
        t, g, r = self.temperature, self.gather, self.rank
        ctr_vit = contrastive_loss(q1, k2, t, g, r) + contrastive_loss(q2, k1, t, g, r)
        ctr_agent = contrastive_loss(qa1, k2, t, g, r) + contrastive_loss(qa2, k1, t, g, r)
        hint = hint_loss(tokens, maps)
        hw = hint_weight(self.step, self.total_steps, self.weights.hint, self.bootstrap.hint_decay)
        self.last_features = f.detach()
        self.terms = {
            "ctr_vit": ctr_vit.detach(),
            "ctr_agent": ctr_agent.detach(),
            "hint_loss": hint.detach(),
            "hint_weight": torch.tensor(hw),
        }
        return self.weights.ce * (ctr_vit + ctr_agent) + hw * hint
