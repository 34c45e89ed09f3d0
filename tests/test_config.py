"""The config tree: defaults, YAML + dotted overrides, unknown keys refused with a suggestion, types checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from podium.config import Config, from_dict, load_config, parse_overrides, save_config, to_yaml
from podium.errors import PodiumError


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
    with pytest.raises(PodiumError, match=match):
        load_config(None, [override])


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
