"""Stacking: `DISTILLER.TYPE: SLD` with `DISTILLER.STACK: [REVIEWKD, ...]` trains with the loss
terms of all the named distillers at once (e.g. SLD + ReviewKD, the paper's "SLD improves other
distillers" experiments).

How it composes:
  * the models run ONCE per step — the teacher once on all views, the student once per view —
    and every component's `distill` receives the same outputs;
  * each component's terms keep their own config weights and are prefixed with its config name:
    "SLD.loss_ce", "SLD.loss_ts", "SLD.loss_ss", "REVIEWKD.loss_kd", ...;
  * cross-entropy is counted once: only the main distiller's (TYPE's) "loss_ce" is kept, the
    other components' "loss_ce" terms are dropped. So the total equals
    main's total + sum over stacked X of (X's total - X's loss_ce) on the same batch;
  * views: the stack accepts the view counts every component accepts; feature methods use the
    weak view of a two-view batch (DISTILLER.FEATURE_VIEWS). The logits returned (train
    accuracy) are the main distiller's;
  * the batch must carry sample indices if any component needs them (CRD).
A component's connector modules live under `parts.<NAME>.`; the student and teacher stay at
`student.` / `teacher.` exactly once, so checkpoints look like a single distiller's.
"""
from torch import nn

from ..errors import ConfigError
from .base import Distiller, is_legacy
from .registry import get_distiller_class

CE_TERM = "loss_ce"


def stack_names(cfg):
    """[main name] + stacked names, checked: known, distinct, composable, with shared views."""
    names = [cfg.DISTILLER.TYPE] + list(cfg.DISTILLER.STACK)
    classes = [get_distiller_class(names[0])]
    classes += [get_distiller_class(name, key="DISTILLER.STACK") for name in names[1:]]
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"config key DISTILLER.STACK names {name} twice (DISTILLER.TYPE counts too); "
                              "list each distiller once")
        seen.add(name)
    for name, cls in zip(names, classes):
        if not getattr(cls, "needs_teacher", True):
            raise ConfigError(f"config keys DISTILLER.TYPE/STACK include {name}, which trains without a teacher "
                              "and adds nothing to a stack; set DISTILLER.TYPE to the first distiller of the stack")
        key = getattr(cls, "teacher_train_key", lambda _: None)(cfg)
        if key:
            raise ConfigError(f"config keys DISTILLER.TYPE/STACK include {name}, whose teacher runs in train mode "
                              f"({key} True, mdistiller's behaviour); a stack runs one eval-mode teacher pass for "
                              f"all terms: set {key} False")
        if is_legacy(cls):
            raise ConfigError(f"config keys DISTILLER.TYPE/STACK include {name}, which overrides forward_train "
                              "(an mdistiller-style plug-in) instead of implementing distill(); it cannot be stacked")
    views = set(classes[0].views)
    for name, cls in zip(names[1:], classes[1:]):
        if not views & set(cls.views):
            raise ConfigError(f"DISTILLER.TYPE {names[0]} and DISTILLER.STACK entry {name} need different inputs "
                              f"({view_words(views)} vs {view_words(cls.views)}); they cannot be stacked")
        views &= set(cls.views)
    return names


def view_words(views):
    return " or ".join(f"{v} view{'s' if v > 1 else ''}" for v in sorted(views))


def check_stack_cfg(cfg):
    """Config-only checks (before any model is built): names, duplicates, views, each method's values."""
    for name in stack_names(cfg)[1:]:
        check = getattr(get_distiller_class(name), "check_cfg", None)
        if check is not None:
            check(cfg)


def unbind_models(distiller):
    """Keep `student`/`teacher` reachable as plain attributes of a component but not as its
    submodules, so the stack registers (and checkpoints) each model once."""
    for name in ("student", "teacher"):
        model = distiller._modules.pop(name)
        object.__setattr__(distiller, name, model)
    return distiller


class Stack(Distiller):
    """One distiller whose loss dict is the union of its components' (see module docstring)."""

    def __init__(self, parts):
        """`parts`: [(config name, built distiller)], the main distiller first; all built on the
        same student and teacher."""
        (_, main), *_ = parts
        super().__init__(main.student, main.teacher)
        self.parts = nn.ModuleDict((name, unbind_models(part)) for name, part in parts)
        views = set(main.views)
        for part in self.parts.values():
            views &= set(part.views)
        self.views = tuple(sorted(views))
        self.needs_index = any(part.needs_index for part in self.parts.values())
        self.teacher_logits_only = all(part.teacher_logits_only for part in self.parts.values())

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        losses, logits = {}, None
        for i, (name, part) in enumerate(self.parts.items()):
            part_logits, terms = part.distill(student_outs, teacher_outs, target, epoch=epoch, **kwargs)
            if i == 0:
                logits = part_logits
            losses.update((f"{name}.{term}", value) for term, value in terms.items() if i == 0 or term != CE_TERM)
        return logits, losses


def build_stack(cfg, main, build_part):
    """Wrap the built main distiller with the DISTILLER.STACK components, or return it unchanged.
    `build_part(cls)` constructs a component class on the same student/teacher."""
    if not cfg.DISTILLER.STACK:
        return main
    names = stack_names(cfg)
    parts = [(names[0], main)] + [(name, build_part(get_distiller_class(name))) for name in names[1:]]
    return Stack(parts)


def extra_parameters_line(cfg, distiller):
    """'KD: 0 extra parameters'; for a stack each component's own connectors, so that they are
    not all attributed to the main distiller: 'SLD: 0, REVIEWKD: 1808774 extra parameters'."""
    parts = distiller.parts.items() if isinstance(distiller, Stack) else [(cfg.DISTILLER.TYPE, distiller)]
    return ", ".join(f"{name}: {part.get_extra_parameters()}" for name, part in parts) + " extra parameters"
