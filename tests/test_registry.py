"""registry.py: one record shape (Entry) for every registry; names given twice refused; lookups that suggest the
closest name; listings with each parameter's default. Every registry of the package is built from it and listed by
`podium list`, and the config refuses an unknown name for every key that chooses from one, naming the key."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from podium.cli import LISTINGS, app, list_lines, registries
from podium.config import load_config, to_yaml
from podium.errors import PodiumError
from podium.registry import Entry, Params, Registry, Row
from podium.tasks.check import check_config

SRC = Path(__file__).resolve().parents[1] / "src"


class _Args(Params):
    gamma: float = Field(2.0, ge=0.0)  # focusing
    alpha: str | None = None  # per-class weights


def _reg() -> Registry:
    return Registry("widgets", "train.widget", [
        Entry("focal", "focuses on hard images", _Args, lambda a: ("focal", a.gamma)),
        Entry("plain", "nothing special"),
    ], noun="widget", params_key="train.widget_args", note="auto: plain")


def test_entry_is_a_frozen_record_of_name_description_params_build():
    assert [f.name for f in dataclasses.fields(Entry)] == ["name", "description", "params", "build"]
    entry = Entry("plain", "nothing special")
    assert entry.params is None and entry.build is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.name = "other"


def test_a_name_registered_twice_is_refused():
    with pytest.raises(ValueError, match="'focal' is registered twice"):
        Registry("widgets", "train.widget", [Entry("focal", "a"), Entry("plain", "b"), Entry("focal", "c")],
                 noun="widget")
    with pytest.raises(TypeError, match="not an Entry"):
        Registry("widgets", "train.widget", [("focal", "a")], noun="widget")


def test_get_names_the_key_the_closest_name_and_every_name():
    reg = _reg()
    assert reg.get("focal").build(_Args()) == ("focal", 2.0)
    assert reg.names() == list(reg) == ["focal", "plain"] and len(reg) == 2 and "plain" in reg and "x" not in reg
    with pytest.raises(PodiumError) as exc:
        reg.get("focl")
    assert str(exc.value) == ("train.widget: unknown widget 'focl'. Did you mean 'focal'? Known: focal, plain "
                              "(`podium list widgets`)")
    with pytest.raises(PodiumError, match=r"unknown widget 'zzz'\. Known: focal, plain"):  # nothing close: no guess
        reg.get("zzz")


def test_describe_rows_hold_each_parameter_with_its_default():
    reg = _reg()
    assert reg.describe() == [Row("focal", "focuses on hard images", {"gamma": 2.0, "alpha": None}),
                              Row("plain", "nothing special", {})]
    assert reg.title() == "train.widget"
    assert reg.lines() == ["focal   focuses on hard images", "        train.widget_args: gamma=2.0, alpha=None",
                           "plain   nothing special", "auto: plain"]


def test_params_fill_defaults_and_refuse_bad_ones_by_dotted_key():
    reg = _reg()
    assert reg.params("focal", {"gamma": 1}, "train.widget_args.") == {"gamma": 1.0, "alpha": None}
    with pytest.raises(PodiumError, match=r"train\.widget_args\.gama: widget 'focal' has no parameter 'gama'\. "
                                          r"Did you mean 'gamma'\? Its parameters: gamma, alpha"):
        reg.params("focal", {"gama": 1}, "train.widget_args.")
    with pytest.raises(PodiumError, match=r"train\.widget_args\.gamma: .*greater than or equal to 0 \(got -1\)"):
        reg.params("focal", {"gamma": -1}, "train.widget_args.")
    assert reg.params("plain", {}) == {}
    with pytest.raises(PodiumError, match=r"x\.gamma: widget 'plain' has no parameters: it applies to "
                                          r"train\.widget=focal"):
        reg.params("plain", {"gamma": 1}, "x.")


# ------------------------------------------------------------------------------------ the package's registries


def _registries_in_source() -> set[str]:
    """'module:NAME' of every module-level `NAME = Registry(...)` under src/podium."""
    found = set()
    for path in (SRC / "podium").rglob("*.py"):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and getattr(node.value.func, "id", None) == "Registry"):
                found |= {f"{module}:{t.id}" for t in node.targets}
    return found


def test_every_registry_is_listed_by_podium_list():
    listed = {spec for specs in LISTINGS.values() for spec in specs}
    derived = {"podium.losses:ALL_LOSSES"}  # every loss whatever the task: the two listed loss registries together
    assert _registries_in_source() == listed | derived
    from podium.losses import ALL_LOSSES, LOSSES, MULTILABEL_LOSSES

    assert ALL_LOSSES.entries == LOSSES.entries + MULTILABEL_LOSSES.entries


@pytest.mark.parametrize("what", list(LISTINGS))
def test_every_registry_is_built_from_the_record(what):
    for reg in registries(what):
        assert isinstance(reg, Registry) and reg.name == what and len(reg) > 0
        assert reg.key.count(".") == 1 and reg.noun
        for entry in reg.entries:
            assert type(entry) is Entry and entry.name and entry.description, (what, entry)
            if entry.params is not None:  # a params model whose every parameter has a default
                assert issubclass(entry.params, BaseModel) and not any(
                    f.is_required() for f in entry.params.model_fields.values()), entry.name
                assert reg.params_key, f"{what}: where are {entry.name}'s parameters set?"
        if what not in ("posthoc", "tasks"):  # posthoc's methods are fitted by podium.run.decisions
            assert all(callable(e.build) for e in reg.entries if e.name != "linear"), what


# -------------------------------------------------------------------------------------------------- the CLI


def test_podium_list_shows_every_registry_its_key_and_size():
    out = CliRunner().invoke(app, ["list"])
    assert out.exit_code == 0 and out.output.splitlines() == list_lines(None)
    rows = {tuple(line.split()[:3]) for line in out.output.splitlines()[1:] if line.strip()}
    for what in LISTINGS:
        for reg in registries(what):
            assert (what, reg.key, str(len(reg))) in rows
    assert ("strategies", "cv.strategy", "5") in rows and ("losses", "train.loss", "7") in rows


def test_podium_list_losses_prints_each_entry_with_its_parameters_and_defaults():
    out = CliRunner().invoke(app, ["list", "losses"]).output
    assert "train.loss (data.task=multilabel):" in out
    assert "  focal              focal loss: down-weights" in out
    assert "train.loss_args: gamma=2.0, alpha=None, beta=0.9999" in out
    assert "train.loss_args: gamma_neg=4.0, gamma_pos=0.0, clip=0.05, eps=1e-08" in out
    heads = CliRunner().invoke(app, ["list", "heads"]).output
    assert "model: head_margin=0.5" in heads and "model: head_margin=0.35" in heads
    with pytest.raises(PodiumError, match="no registry 'lossez'. Did you mean 'losses'"):
        list_lines("lossez")


@pytest.mark.parametrize("what", ["models", "tasks", "metrics", "samplers", "heads", "tta", "augment", "posthoc",
                                  "strategies"])
def test_the_old_list_commands_still_answer(what):
    out = CliRunner().invoke(app, ["list", what])
    assert out.exit_code == 0
    assert all(name in out.output for reg in registries(what) for name in reg.names())


# ------------------------------------------------------------------------------------ the config's names

UNKNOWN = [  # (the override, the key it sets, the name suggested)
    ("data.task=multitsk", "data.task", "multitask"),
    ("cv.strategy=stratifed", "cv.strategy", "stratified"),
    ("model.head=arcfase", "model.head", "arcface"),
    ("augment.preset=heavey", "augment.preset", "heavy"),
    ("train.sampler=sqr", "train.sampler", "sqrt"),
    ("train.loss=focl", "train.loss", "focal"),
    ("posthoc.method=priors", "posthoc.method", "prior"),
    ("tta.views=[hflip, vflp]", "tta.views", "vflip"),
    ("tta.combine=mean_prob", "tta.combine", "mean_probs"),
    ("cv.metric=acuracy", "cv.metric", "accuracy"),
]


@pytest.mark.parametrize("override, key, close", UNKNOWN, ids=[u[1] for u in UNKNOWN])
def test_an_unknown_name_is_refused_naming_its_key(override, key, close):
    cfg = load_config(None, [override])  # the schema takes any name: the registries sit above it
    with pytest.raises(PodiumError) as exc:
        check_config(cfg)
    message = str(exc.value)
    assert message.startswith(f"{key}: unknown ") and f"Did you mean '{close}'?" in message and "Known: " in message


CHOICES = [  # (key, extra overrides some names need)
    ("data.task", {"multilabel": ["data.label_col=[a, b]"], "multitask": ["data.label_col=[a, b]"]}),
    ("cv.strategy", {"group": ["cv.group_col=g"], "stratified_group": ["cv.group_col=g"]}),
    ("model.head", {}), ("augment.preset", {}), ("train.sampler", {}), ("posthoc.method", {}), ("tta.combine", {}),
    ("tta.views", {}),
]


@pytest.mark.parametrize("key, extra", CHOICES, ids=[c[0] for c in CHOICES])
def test_every_entry_is_a_name_the_config_takes(key, extra):
    regs = [r for what in LISTINGS for r in registries(what) if r.key == key]
    for name in regs[0].names():
        check_config(load_config(None, [f"{key}={name}", *extra.get(name, [])]))


def test_check_config_fills_the_loss_args_in_place_for_the_saved_config():
    cfg = load_config(None, ["train.loss=focal", "train.loss_args.gamma=1"])
    assert cfg.train.loss_args == {"gamma": 1}
    assert check_config(cfg) is cfg and cfg.train.loss_args == {"gamma": 1.0, "alpha": None, "beta": 0.9999}
    assert "loss_args:\n    gamma: 1.0\n    alpha: null\n    beta: 0.9999" in to_yaml(cfg)
    with pytest.raises(PodiumError, match=r"model\.head_margin: head 'cosine' has no parameters: it applies to "
                                          r"model\.head=arcface\|cosface"):
        check_config(load_config(None, ["model.head=cosine", "model.head_margin=0.2"]))
    from podium.heads import head_margin

    assert head_margin(load_config(None, ["model.head=arcface"]).model) == 0.5  # the head's default
