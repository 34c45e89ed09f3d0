"""datasets.py: the long-tailed profile (CIFAR-10-LT protocol) and the --imbalance option."""

from __future__ import annotations

import numpy as np
import pytest

from podium.data.datasets import long_tail_counts, long_tail_indices, make_dataset
from podium.errors import PodiumError


def test_exponential_profile_from_6000_to_60():
    counts = long_tail_counts(6000, 100, 10)
    assert counts == [int(6000 * 100 ** (-c / 9)) for c in range(10)]
    assert counts[0] == 6000 and counts[-1] == 60 and counts == sorted(counts, reverse=True)
    assert counts[3] == 1292  # 6000 x 100^(-1/3)
    assert long_tail_counts(500, 1, 4) == [500] * 4
    with pytest.raises(PodiumError, match="at least 1"):
        long_tail_counts(6000, 0.5, 10)


def test_indices_keep_the_counts_per_class_drawn_at_random():
    labels = np.repeat(np.arange(3), 50)
    keep = long_tail_indices(labels, [50, 20, 5], seed=0)
    assert np.bincount(labels[keep]).tolist() == [50, 20, 5] and len(set(keep)) == len(keep)
    assert not np.array_equal(keep, long_tail_indices(labels, [50, 20, 5], seed=1))
    assert not np.array_equal(np.sort(keep[labels[keep] == 1]), np.arange(50, 70))  # not simply the first ones
    with pytest.raises(PodiumError, match="Cannot keep"):
        long_tail_indices(labels, [60, 1, 1], seed=0)


def test_imbalance_is_refused_where_it_does_not_apply(tmp_path):
    with pytest.raises(PodiumError, match=r"--imbalance does not apply to 'digits' \(it does to: fashion-lt\)"):
        make_dataset("digits", tmp_path / "d", imbalance=10)
    with pytest.raises(PodiumError, match="--n does not apply to fashion-lt"):
        make_dataset("fashion-lt", tmp_path / "f", n=100)


def test_fashion_lt_cuts_the_training_set_and_keeps_the_test_set(tmp_path, monkeypatch):
    import podium.data.datasets as ds

    train_y, test_y = np.repeat(np.arange(10), 6000), np.repeat(np.arange(10), 1000)
    train_x = np.arange(60000, dtype=np.uint32)[:, None]  # each image names its own row
    test_x = np.zeros((10000, 1), np.uint8)
    monkeypatch.setattr(ds, "load_fashion_mnist", lambda: (train_x, train_y, test_x, test_y))
    written = {}

    def record(out, tx, ty, vx, vy, classes, prefix, seed):
        written.update(tx=tx, ty=ty, vx=vx, vy=vy, classes=classes)
        return []

    monkeypatch.setattr(ds, "write_competition", record)
    ds.make_dataset("fashion-lt", tmp_path / "lt", imbalance=10)
    assert np.bincount(written["ty"]).tolist() == long_tail_counts(6000, 10, 10)
    assert (train_y[written["tx"][:, 0]] == written["ty"]).all()  # images stay with their labels
    assert written["vx"] is test_x and written["vy"] is test_y and written["classes"] == ds.FASHION_CLASSES
    ds.make_dataset("fashion-lt", tmp_path / "lt100")  # default: imbalance 100, 6,000 down to 60
    assert np.bincount(written["ty"]).tolist()[::9] == [6000, 60]


def test_cli_passes_imbalance_through():
    from typer.testing import CliRunner

    from podium.cli import app

    res = CliRunner().invoke(app, ["datasets", "make", "digits", "out", "--imbalance", "10"])
    assert isinstance(res.exception, PodiumError) and "--imbalance does not apply to 'digits'" in str(res.exception)


def test_fashion_noisy_keeps_train_clean_and_corrupts_test_from_the_seed(tmp_path, monkeypatch):
    import podium.data.datasets as ds

    rng = np.random.default_rng(0)
    train_x, test_x = (rng.integers(0, 256, size=(k, 8, 8), dtype=np.uint8) for k in (30, 40))
    train_y, test_y = np.arange(30) % 10, np.arange(40) % 10
    monkeypatch.setattr(ds, "load_fashion_mnist", lambda: (train_x, train_y, test_x, test_y))
    written = {}

    def record(out, tx, ty, vx, vy, classes, prefix, seed):
        written.update(tx=tx, ty=ty, vx=vx, vy=vy)
        return []

    monkeypatch.setattr(ds, "write_competition", record)
    ds.make_dataset("fashion-noisy", tmp_path / "n", seed=1)
    assert written["tx"] is train_x and written["vy"] is test_y  # clean train set, test labels kept for scoring
    noisy = written["vx"]
    assert noisy.shape == (40, 8, 8, 3) and noisy.dtype == np.uint8
    assert np.array_equal(noisy, ds.corrupt_like_scans(test_x, 1))
    assert not np.array_equal(noisy, ds.corrupt_like_scans(test_x, 2))
    # each corrupted image is closest to one of the 8 rotations/flips of its original, and not always the original
    def views(x):
        return [np.rot90(v, k) for v in (x, x[:, ::-1]) for k in range(4)]

    nearest = [int(np.argmin([np.abs(noisy[i].mean(-1) - v).mean() for v in views(test_x[i].astype(float))]))
               for i in range(40)]
    assert len(set(nearest)) >= 4
    assert all(np.abs(noisy[i].mean(-1) - test_x[i]).mean() > 0 for i in range(40))


def test_fashion_noisy_writes_a_competition_with_held_out_labels(tmp_path, monkeypatch):
    import pandas as pd
    from PIL import Image

    import podium.data.datasets as ds

    rng = np.random.default_rng(0)
    monkeypatch.setattr(ds, "load_fashion_mnist", lambda: (rng.integers(0, 256, (12, 8, 8), dtype=np.uint8),
                                                           np.arange(12) % 10,
                                                           rng.integers(0, 256, (5, 8, 8), dtype=np.uint8),
                                                           np.arange(5) % 10))
    ds.make_dataset("fashion-noisy", tmp_path / "n")
    test = pd.read_csv(tmp_path / "n" / "test.csv")
    assert list(test.columns) == ["id"] and len(pd.read_csv(tmp_path / "n" / "test_labels.csv")) == 5
    assert Image.open(tmp_path / "n" / "images" / f"{test['id'][0]}.png").mode == "RGB"
    train = pd.read_csv(tmp_path / "n" / "train.csv")
    assert Image.open(tmp_path / "n" / "images" / f"{train['id'][0]}.png").mode == "L"


def _fake_fashion(monkeypatch, n_train: int = 600):
    import podium.data.datasets as ds

    train_y = np.repeat(np.arange(10), n_train // 10)
    train_x = np.arange(n_train, dtype=np.uint32)[:, None]  # each image names its own row
    monkeypatch.setattr(ds, "load_fashion_mnist", lambda: (train_x, train_y, np.zeros((5, 4, 4), np.uint8),
                                                           np.arange(5)))
    written = {}

    def record(out, tx, ty, vx, vy, classes, prefix, seed):
        written.update(tx=tx, ty=ty)
        return []

    monkeypatch.setattr(ds, "write_competition", record)
    return written, train_y


@pytest.mark.parametrize("name", ["fashion-mnist", "fashion-noisy"])
def test_n_keeps_exactly_n_seeded_rows(tmp_path, monkeypatch, name):
    written, train_y = _fake_fashion(monkeypatch)
    make_dataset(name, tmp_path / "a", n=60, seed=1)
    first = written["tx"][:, 0].copy()
    assert len(written["ty"]) == 60 and len(set(first)) == 60
    assert (train_y[written["tx"][:, 0]] == written["ty"]).all()  # images stay with their labels
    assert np.array_equal(first, np.random.default_rng(1).permutation(600)[:60])  # the draw the benchmarks used
    make_dataset(name, tmp_path / "b", n=60, seed=1)
    assert np.array_equal(written["tx"][:, 0], first)  # same seed, same rows
    make_dataset(name, tmp_path / "c", n=60, seed=2)
    assert not np.array_equal(written["tx"][:, 0], first)
    make_dataset(name, tmp_path / "d")
    assert len(written["ty"]) == 600  # no --n: all of them


@pytest.mark.parametrize("name", ["fashion-mnist", "fashion-noisy", "digits"])
@pytest.mark.parametrize("n", [0, -5, 100_000])
def test_n_that_cannot_be_honoured_is_refused(tmp_path, monkeypatch, name, n):
    _fake_fashion(monkeypatch)
    with pytest.raises(PodiumError, match=rf"--n {n}: {name} has [\d,]+ training images; give --n between 1 and"):
        make_dataset(name, tmp_path / "x", n=n)
    assert not (tmp_path / "x" / "train.csv").exists()


def test_digits_n_writes_exactly_n_training_rows(tmp_path):
    import pandas as pd

    make_dataset("digits", tmp_path / "d", n=60, seed=3)
    train, test = pd.read_csv(tmp_path / "d" / "train.csv"), pd.read_csv(tmp_path / "d" / "test.csv")
    assert len(train) == 60 and sorted(train["label"].value_counts()) == [6] * 10 and len(test) == 360
    assert len(list((tmp_path / "d" / "images").glob("*.png"))) == 60 + 360  # no image that no row names
    make_dataset("digits", tmp_path / "e", n=60, seed=3)
    assert pd.read_csv(tmp_path / "e" / "train.csv").equals(train)
    with pytest.raises(PodiumError, match="already holds a competition"):
        make_dataset("digits", tmp_path / "d", n=30)
    make_dataset("digits", tmp_path / "all")
    assert len(pd.read_csv(tmp_path / "all" / "train.csv")) == 1437


def test_every_maker_writes_exactly_n_rows_or_refuses(tmp_path):
    """--n on the scenario makers: n training rows, or a PodiumError; every registered maker is covered here."""
    import pandas as pd

    from podium.data.datasets import DATASETS
    from podium.data.scenarios.letters import make_letters
    from podium.data.scenarios.profiles import make_profiles

    # digits, fashion-mnist, fashion-noisy: above; fashion-lt refuses --n (test_imbalance_is_refused_where_...)
    assert set(DATASETS) == {"digits", "fashion-mnist", "fashion-noisy", "fashion-lt", "letters", "profiles"}
    make_letters(tmp_path / "letters", 14, 0, n_test=1)
    make_profiles(tmp_path / "profiles", 14, 0, size=32)
    for name in ("letters", "profiles"):
        assert len(pd.read_csv(tmp_path / name / "train.csv")) == 14, name
    for name, n in (("letters", 0), ("profiles", 0), ("profiles", 15)):
        with pytest.raises(PodiumError, match=f"--n (must be a positive number .* got )?{n}"):
            make_dataset(name, tmp_path / f"bad-{name}-{n}", n=n)
