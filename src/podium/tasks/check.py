"""`check_config`: a config checked against the registries the config schema cannot see, because the schema sits
below them (podium.config is the ground floor; the registries are leaves and tasks above it)."""

from __future__ import annotations

import difflib

from podium.augment import PRESETS
from podium.config import Config
from podium.errors import PodiumError
from podium.heads import HEADS, head_margin
from podium.losses import ALL_LOSSES, LOSSES, MULTILABEL_LOSSES
from podium.models import default_image_size
from podium.posthoc import POSTHOC
from podium.samplers import AUTO, SAMPLERS
from podium.strategies import STRATEGIES
from podium.tasks import TASKS, metric_names
from podium.tta import COMBINE, parse_tta


def check_config(cfg: Config) -> Config:
    """`cfg` checked against the registries the config schema cannot see (it sits below them): every key that names
    an entry (data.task, cv.strategy, model.head, augment.preset, train.sampler, train.loss, posthoc.method,
    tta.views, tta.combine, cv.metric) names one the task takes, and model.head_margin and train.loss_args fit their
    entry's parameters. train.loss_args gets every default filled in, in place, so the run's config.yaml records
    the loss exactly; so does data.image_size when the config leaves it unset: the input size of the pretrained
    weights the model starts from (timm's pretrained_cfg; 224 without weights). Every command that takes a config
    calls this once; returns `cfg`."""
    TASKS.get(cfg.data.task)
    STRATEGIES.get(cfg.cv.strategy)
    HEADS.get(cfg.model.head)
    head_margin(cfg.model)
    PRESETS.get(cfg.augment.preset)
    if cfg.train.sampler != AUTO:
        SAMPLERS.get(cfg.train.sampler)
    POSTHOC.get(cfg.posthoc.method)
    parse_tta(cfg.tta.views)
    COMBINE.get(cfg.tta.combine)

    task, loss = cfg.data.task, cfg.train.loss
    ALL_LOSSES.get(loss)
    if task == "multilabel" and loss not in MULTILABEL_LOSSES:
        raise PodiumError(f"train.loss={loss} takes one class per image; data.task=multilabel needs a multi-label "
                          f"loss: {' | '.join(MULTILABEL_LOSSES)}")
    if task != "multilabel" and loss not in LOSSES:
        raise PodiumError(f"train.loss={loss} is a multi-label loss; data.task={task} takes {', '.join(LOSSES)}")
    cfg.train.loss_args = ALL_LOSSES.params(loss, cfg.train.loss_args, "train.loss_args.")
    if "image_size" not in cfg.data.model_fields_set:  # unset (the schema's 224 is the size without weights)
        cfg.data.image_size = default_image_size(cfg.model) or cfg.data.image_size

    names = metric_names(cfg.data)
    if cfg.cv.metric not in names:
        close = difflib.get_close_matches(cfg.cv.metric, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise PodiumError(f"cv.metric: unknown metric '{cfg.cv.metric}' for data.task={cfg.data.task}.{hint} Known: "
                          f"{', '.join(names)} (`podium list metrics`)")
    return cfg
