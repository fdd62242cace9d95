"""Run classifiers over a test loader once and keep what the analysis needs, on the host:
logits (N, C) and pooled features (N, D) per model, and the targets (N,)."""
import numpy as np
import torch

from ..engine.device import to_device
from ..engine.evaluation import split_test_batch
from ..engine.progress import Bar


@torch.no_grad()
def collect_outputs(models, loader, device, progress=False):
    """`models` {label: network returning (logits, feats)} -> ({label: {"logits", "features"}},
    targets). Every model sees the same batches (one pass over the data for all of them);
    "features" is None for a model whose feats carry no "pooled_feat"."""
    for model in models.values():
        model.eval()
    logits = {label: [] for label in models}
    features = {label: [] for label in models}
    targets = []
    bar = Bar(len(loader), "analysis", progress)
    for batch in loader:
        image, target = to_device(split_test_batch(batch), device)
        for label, model in models.items():
            out, feats = model(image)
            logits[label].append(out.float().cpu())
            pooled = feats.get("pooled_feat") if isinstance(feats, dict) else None
            if pooled is not None and features[label] is not None:
                features[label].append(pooled.float().flatten(1).cpu())
            else:
                features[label] = None
        targets.append(target.cpu())
        bar.advance()
    bar.close()
    outputs = {label: {"logits": torch.cat(logits[label]).numpy(),
                       "features": torch.cat(features[label]).numpy() if features[label] else None}
               for label in models}
    return outputs, torch.cat(targets).numpy().astype(np.int64)
