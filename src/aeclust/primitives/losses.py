"""Reconstruction losses shared by the pretraining and the methods' clustering stages."""

from __future__ import annotations

import torch
from torch.nn import functional as F

#: The pretraining losses (``PretrainConfig.loss``).
PRETRAIN_LOSSES = ("mse", "bce")
#: The reconstruction terms of a clustering stage (DCN, DKM, CT): per-sample sum of squares or
#: the mean over entries (see :func:`reconstruction_loss`).
REC_LOSSES = ("sum", "mean")


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Reconstruction loss of a batch, computed in fp32.

    ``"mse"`` (alias ``"mean"``): mean over all entries; ``"sum"``: per-sample sum of squares
    ‖x − x̂‖² averaged over the batch (the least-squares loss of DCN and DKM and their authors'
    code, D times larger than ``"mse"``); ``"bce"``: binary cross-entropy for outputs in [0, 1].
    """
    if kind == "sum":
        return (x_hat.float() - x.float()).pow(2).sum(dim=1).mean()
    if kind in ("mse", "mean"):
        return F.mse_loss(x_hat.float(), x.float())
    if kind == "bce":
        # CUDA autocast refuses binary_cross_entropy outright (it is on its "unsafe" list), even
        # for fp32 inputs; the loss is fp32 anyway, so autocast is switched off around it.
        with torch.autocast(device_type=x_hat.device.type, enabled=False):
            return F.binary_cross_entropy(x_hat.float().clamp(1e-7, 1 - 1e-7), x.float())
    raise ValueError(f"unknown reconstruction loss {kind!r}; valid: 'mse', 'sum', 'bce'")
