"""The config tree: defaults, YAML + dotted overrides, unknown keys refused with a suggestion, types checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from podium.config import Config, config_changes, from_dict, load_config, parse_overrides, save_config, to_yaml
from podium.errors import PodiumError
from podium.tasks.check import check_config


def _yaml(tmp_path: Path, obj) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(obj if isinstance(obj, str) else yaml.safe_dump(obj))
    return path


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert cfg == Config()
    assert (cfg.data.id_col, cfg.data.label_col, cfg.cv.n_folds, cfg.cv.strategy) == ("id", "label", 5, "stratified")
    assert cfg.cache_dir() == Path("runs") / "cache"


@pytest.mark.parametrize(
    "raw, suggestion",
    [
        ({"data": {"imgae_size": 64}}, "Unknown config key 'data.imgae_size'. Did you mean 'data.image_size'?"),
        ({"imgae_size": 64}, "Unknown config key 'imgae_size'. Did you mean 'data.image_size'?"),
        ({"cv": {"nfolds": 3}}, "Unknown config key 'cv.nfolds'. Did you mean 'cv.n_folds'?"),
        ({"dat": {"train_csv": "x.csv"}}, "Unknown config key 'dat'. Did you mean 'data'?"),
    ],
)
def test_unknown_keys_suggest_the_closest(tmp_path, raw, suggestion):
    with pytest.raises(PodiumError) as exc:
        load_config(_yaml(tmp_path, raw))
    assert suggestion in str(exc.value)


def test_unknown_key_without_a_close_match_still_points_at_the_list():
    with pytest.raises(PodiumError, match=r"Unknown config key 'zzzzqqq'\. \(`podium config show`"):
        from_dict({"zzzzqqq": 1})


def test_overrides_are_typed_and_beat_the_file(tmp_path):
    path = _yaml(tmp_path, {"name": "base", "data": {"image_size": 64, "train_csv": "t.csv"}})
    cfg = load_config(path, ["data.image_size=32", "cv.n_folds=3", "data.classes=[cat, dog]",
                             "data.train_csv=null", "data.train_dir=train", "name=exp 1", "cv.group_col="])
    assert cfg.data.image_size == 32 and cfg.cv.n_folds == 3
    assert cfg.data.classes == ["cat", "dog"]
    assert cfg.data.train_csv is None and cfg.data.train_dir == Path("train")
    assert cfg.name == "exp 1" and cfg.cv.group_col is None
    assert yaml.safe_load(path.read_text())["data"]["image_size"] == 64  # the user's file is not modified


def test_parse_overrides_reads_values_as_yaml():
    assert parse_overrides(["a=3", "b=0.5", "c=true", "d=[1, 2]", "e=null", "f=text", "g=x=y"]) == [
        ("a", 3), ("b", 0.5), ("c", True), ("d", [1, 2]), ("e", None), ("f", "text"), ("g", "x=y")]
    with pytest.raises(PodiumError, match="not of the form key=value"):
        parse_overrides(["epochs"])


def test_unknown_override_key_is_refused():
    with pytest.raises(PodiumError, match="Unknown config key 'data.imag_size'. Did you mean 'data.image_size'"):
        load_config(None, ["data.imag_size=3"])


@pytest.mark.parametrize(
    "override, match",
    [
        ("data.image_size=big", r"data.image_size: .*valid integer.*\(got 'big'\)"),
        ("data.image_size=3.5", r"data.image_size: .*integer"),
        ("data.resize=crop", r"data.resize: .*'resize', 'pad' or 'keep'"),
        ("cv.strategy=random", r"cv.strategy"),
        ("data.channels=2", r"data.channels"),
        ("data.image_size=4", r"at least 8"),
        ("cv.n_folds=1", r"cv.n_folds must be at least 2"),
        ("data.subset=1", r"data.subset must be at least 2"),
        ("cv.strategy=group", r"needs cv.group_col"),
    ],
)
def test_bad_values_name_their_dotted_key(override, match):
    with pytest.raises(PodiumError, match=match):  # the schema's checks, then the registries' (cv.strategy)
        check_config(load_config(None, [override]))


def test_one_source_each():
    with pytest.raises(PodiumError, match="data.train_csv or data.train_dir, not both"):
        load_config(None, ["data.train_csv=a.csv", "data.train_dir=b"])
    with pytest.raises(PodiumError, match="data.test_csv or data.test_dir, not both"):
        load_config(None, ["data.test_csv=a.csv", "data.test_dir=b"])


@pytest.mark.parametrize(
    "text, match",
    [("data: [unclosed", "is not valid YAML"), ("- a\n- b\n", "must hold a mapping")],
)
def test_bad_files(tmp_path, text, match):
    with pytest.raises(PodiumError, match=match):
        load_config(_yaml(tmp_path, text))
    with pytest.raises(PodiumError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_empty_file_is_the_defaults(tmp_path):
    assert load_config(_yaml(tmp_path, "")) == Config()


def test_yaml_round_trip(tmp_path):
    cfg = load_config(None, ["data.train_csv=train.csv", "data.classes=[b, a]", "cv.group_col=pid",
                             "cv.strategy=group"])
    save_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(tmp_path / "out" / "config.yaml") == cfg
    assert "train_csv: train.csv" in to_yaml(cfg)


def test_integer_class_names_are_accepted_as_text():
    assert load_config(None, ["data.classes=[0, 1, 2]"]).data.classes == ["0", "1", "2"]


# ------------------------------------------------------------------------------- bounds, names, strict YAML

BAD_VALUES = [  # (dotted key, a value a user could type by mistake)
    ("train.epochs", 0), ("train.batch_size", 0), ("train.eval_batch_size", -1), ("train.lr", 0),
    ("train.lr", -0.1), ("train.lr", ".inf"), ("train.lr", ".nan"), ("train.warmup_lr", -1e-5),
    ("train.min_lr", -1e-6), ("train.weight_decay", -0.01), ("train.warmup_epochs", -1), ("train.patience", -1),
    ("train.accumulate", 0), ("train.devices", 0), ("train.grad_clip", 0), ("train.grad_clip", -1.0),
    ("train.ema_decay", 0), ("train.ema_decay", 1), ("train.ema_decay", 1.5), ("train.layer_decay", 0),
    ("train.layer_decay", 1.1), ("train.seed", -1), ("train.seed", 2**32), ("train.repeat_threshold", 0),
    ("model.freeze_epochs", -1), ("model.drop_rate", 1.0), ("model.drop_rate", -0.1), ("model.in_chans", 0),
    ("model.head_scale", 0), ("cv.seed", -3), ("cv.n_folds", 1), ("data.image_size", 0), ("data.subset", 0),
    ("data.center_crop", 0), ("augment.mix_prob", 2), ("posthoc.tau", -0.5), ("posthoc.tau_max", 0),
    ("train.workers", -1), ("train.workers", 1.5), ("train.workers", "many"),
]


@pytest.mark.parametrize("key, value", BAD_VALUES, ids=[f"{k}={v}" for k, v in BAD_VALUES])
def test_out_of_range_values_name_their_dotted_key(key, value):
    with pytest.raises(PodiumError) as exc:
        load_config(None, [f"{key}={value}"])
    assert key in str(exc.value)


@pytest.mark.parametrize("override", ["train.layer_decay=1", "train.grad_clip=null", "train.patience=0",
                                      "model.freeze_epochs=0", "model.drop_rate=0.5", "train.warmup_epochs=0",
                                      "train.warmup_lr=0", "train.min_lr=0", "train.weight_decay=0",
                                      "train.seed=0", "model.in_chans=1", "model.head=arcface", "train.workers=0"])
def test_values_at_the_edge_of_their_range_are_accepted(override):
    load_config(None, [override])


def test_workers_is_auto_or_a_count():
    assert load_config(None).train.workers == "auto"
    assert load_config(None, ["train.workers=3"]).train.workers == 3
    assert load_config(None, ["train.workers=auto"]).train.workers == "auto"


def test_loss_args_and_head_margins_are_bounded():
    with pytest.raises(PodiumError, match=r"train\.loss_args\.tau"):
        check_config(load_config(None, ["train.loss=logit_adjusted", "train.loss_args={tau: -1}"]))
    with pytest.raises(PodiumError, match=r"train\.loss_args\.weights"):
        check_config(load_config(None, ["train.loss=weighted_ce", "train.loss_args={weights: [1, -2]}"]))
    with pytest.raises(PodiumError, match=r"train\.loss_args\.pos_weight"):
        check_config(load_config(None, ["data.task=multilabel", "data.label_col=[a, b]",
                                        "train.loss_args={pos_weight: [1, -2]}"]))
    with pytest.raises(PodiumError, match=r"model\.head_margin"):
        load_config(None, ["model.head=cosface", "model.head_margin=-0.1"])
    with pytest.raises(PodiumError, match=r"model\.head_margin=2.0 .*below pi/2"):
        check_config(load_config(None, ["model.head=arcface", "model.head_margin=2.0"]))
    with pytest.raises(PodiumError, match=r"train\.task_weights"):
        load_config(None, ["data.task=multitask", "data.label_col=[a, b]", "train.task_weights=[1, -1]"])


def test_learning_rate_floors_stay_below_the_peak():
    with pytest.raises(PodiumError, match=r"train\.min_lr=0\.01 is above train\.lr=0\.001.*train\.min_lr="):
        load_config(None, ["train.min_lr=0.01"])
    with pytest.raises(PodiumError, match=r"train\.warmup_lr=0\.1 is above train\.lr"):
        load_config(None, ["train.warmup_lr=0.1"])
    load_config(None, ["train.warmup_lr=0.1", "train.warmup_epochs=0"])  # no warmup: warmup_lr is not used


@pytest.mark.parametrize("name", ["a/b", "../elsewhere", "..", ".", "", "  ", "/tmp/run", "a\\b", "x\0y", "é" * 128])
def test_name_is_one_folder_name(name):
    with pytest.raises(PodiumError) as exc:
        from_dict({"name": name})
    text = str(exc.value)
    assert "name must be one folder name" in text and "name=my-run" in text


@pytest.mark.parametrize("name", ["exp 1", "effnet-b0_fold.5", "..x", "é" * 127, "a" * 255])
def test_ordinary_names_are_accepted(name):
    assert from_dict({"name": name}).name == name


def test_name_is_checked_on_assignment_too():
    cfg = Config()
    with pytest.raises(ValueError, match="one folder name"):
        cfg.name = "../x"


@pytest.mark.parametrize(
    "text, key, lines",
    [
        ("name: a\ntrain:\n  epochs: 3\n  lr: 0.1\n  epochs: 30\n", "train.epochs", "lines 3 and 5"),
        ("name: a\nname: b\n", "name", "lines 1 and 2"),
        ("data: {image_size: 32, image_size: 64}\n", "data.image_size", "on line 1"),
    ],
)
def test_duplicate_keys_are_refused_with_their_lines(tmp_path, text, key, lines):
    path = _yaml(tmp_path, text)
    with pytest.raises(PodiumError) as exc:
        load_config(path)
    message = str(exc.value)
    assert f"the key '{key}' appears twice ({lines}); keep one of them" in message and str(path) in message


def test_yaml_aliases_are_refused_and_an_alias_bomb_gives_a_short_message(tmp_path):
    path = _yaml(tmp_path, "data:\n  classes: &c [a, b]\ncv:\n  group_col: *c\n")
    with pytest.raises(PodiumError, match=r"(?s)alias '\*c'.*no YAML anchors and aliases.*line 4"):
        load_config(path)
    bomb = "name: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))
    assert len(bomb) < 700
    with pytest.raises(PodiumError) as exc:
        load_config(_yaml(tmp_path, bomb))
    assert "alias" in str(exc.value) and len(str(exc.value)) < 1000


def test_huge_values_are_cut_in_messages():
    with pytest.raises(PodiumError) as exc:
        from_dict({"train": {"epochs": "x" * 10_000_000}})
    text = str(exc.value)
    assert "train.epochs" in text and len(text) < 1000 and "characters" in text
    with pytest.raises(PodiumError) as exc:  # very many problems: the message as a whole is bounded
        from_dict({"train": {"task_weights": [-1] * 5000}})
    assert len(str(exc.value)) <= 5000 and "characters cut" in str(exc.value)


def test_podium_error_messages_are_bounded():
    short = PodiumError("fine")
    assert str(short) == "fine"
    long = PodiumError("head " + "x" * 100_000 + " the fix")
    text = str(long)
    assert len(text) < 5000 and text.startswith("head ") and text.endswith(" the fix") and "characters cut" in text


def test_overrides_are_read_with_the_strict_loader():
    assert parse_overrides(["data.classes={a: 1, a: 2}"]) == [("data.classes", "{a: 1, a: 2}")]  # kept as text


def test_deeply_nested_yaml_is_one_message(tmp_path):
    with pytest.raises(PodiumError, match="nests lists or mappings too deeply"):
        load_config(_yaml(tmp_path, "name: " + "[" * 5000 + "]" * 5000))
    with pytest.raises(PodiumError, match="data.classes"):  # an override too deep for YAML is taken as text
        load_config(None, ["data.classes=" + "[" * 5000 + "]" * 5000])


def test_config_changes_fill_defaults_and_ignore_speed_only_keys(tmp_path):
    saved = tmp_path / "config.yaml"
    save_config(load_config(None, ["train.workers=0", "train.compile=true"]), saved)
    assert config_changes(saved, load_config(None, ["train.workers=3"])) == []
    saved.write_text(saved.read_text().replace("  epochs:", "  unused_key_gone: 1\n  epochs:"))
    assert config_changes(saved, load_config(None)) == ["config.yaml"]  # no longer a config: changed everywhere
    save_config(load_config(None, ["train.lr=0.5", "model.name=resnet18"]), saved)
    assert config_changes(saved, load_config(None)) == ["model.name", "train.lr"]
