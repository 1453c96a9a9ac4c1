"""Frozen-backbone feature extraction: CLS token after the final norm, any dataset, any data config."""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ssl_vit.data.images import FileImages, TensorImages
from ssl_vit.errors import SslvitError
from ssl_vit.transforms.eval import to_model_input


class _EvalFiles(Dataset):
    def __init__(self, files: FileImages, img_size: int):
        from ssl_vit.data.imagefolder import pil_loader
        from ssl_vit.transforms.pipeline import eval_transform
        self.files, self.t, self.load = files, eval_transform(img_size), pil_loader

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        path, label = self.files.samples[i]
        try:
            return self.t(self.load(path, 3)), label
        except Exception as e:  # noqa: BLE001
            raise SslvitError(f"cannot decode image '{path}' ({type(e).__name__}); remove it") from None


@torch.inference_mode()
def extract_features(model: nn.Module, data, data_cfg: Dict, batch_size: int = 512,
                     device: Optional[torch.device] = None, autocast_dtype: Optional[torch.dtype] = None,
                     num_workers: int = 2, progress: bool = False, desc: str = "features") -> torch.Tensor:
    """-> (N, D) float32 features (not normalised), in dataset order."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    if isinstance(data, TensorImages):
        batches = (data.images[i:i + batch_size] for i in range(0, len(data), batch_size))
        total = (len(data) + batch_size - 1) // batch_size
    else:
        loader = DataLoader(_EvalFiles(data, int(data_cfg["img_size"])), batch_size=batch_size,
                            num_workers=num_workers, shuffle=False)
        batches = (x for x, _ in loader)
        total = len(loader)
    for x in tqdm(batches, total=total, desc=desc, disable=not progress, leave=False):
        x = to_model_input(x.to(device), data_cfg)                                   # (B, C, S, S)
        if autocast_dtype is not None:
            with torch.autocast(device.type, dtype=autocast_dtype):
                f = model(x)
        else:
            f = model(x)
        out.append(f.float().cpu())                                                  # (B, D)
    model.train(was_training)
    return torch.cat(out, 0)
