"""The number a training step minimises, from a distiller's dict of loss terms."""


def total_loss(losses):
    """mdistiller's rule: the sum of every term's mean (terms may be per-sample vectors)."""
    if not losses:
        raise ValueError("the distiller returned no loss terms")
    return sum(value.float().mean() for value in losses.values())
