"""samplers.py: class frequencies over many draws, deterministic and resumable per (seed, epoch), and the class balance
kept when the draw is sharded over several processes (podium's ShardedSampler; Lightning's wrapper too)."""

from __future__ import annotations

import numpy as np
import pytest
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

from podium.augment import NumberedDraws, batch_seed
from podium.config import TrainConfig
from podium.samplers import SAMPLERS, RepeatFactorSampler, ShardedSampler, create_sampler

LABELS = np.repeat([0, 1, 2], [1000, 100, 10])  # a 100x long tail


def _class_shares(sampler, epochs: int) -> np.ndarray:
    drawn = []
    for e in range(epochs):
        sampler.set_epoch(e)
        drawn += list(sampler)
    return np.bincount(LABELS[drawn], minlength=3) / len(drawn)


def test_class_balanced_draws_every_class_equally_often():
    shares = _class_shares(create_sampler("class_balanced", LABELS, seed=1, repeat_threshold=0.1), epochs=20)
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.01)  # 22,200 draws: 3 sd is 0.01


def test_sqrt_draws_classes_in_proportion_to_the_root_of_their_size():
    shares = _class_shares(create_sampler("sqrt", LABELS, seed=1, repeat_threshold=0.1), epochs=20)
    root = np.sqrt([1000, 100, 10])
    np.testing.assert_allclose(shares, root / root.sum(), atol=0.01)


def test_random_draws_each_image_once_per_epoch():
    sampler = create_sampler("random", LABELS, seed=1, repeat_threshold=0.1)
    sampler.set_epoch(3)
    assert sorted(sampler) == list(range(len(LABELS)))


def test_repeat_factor_repeats_rare_images_sqrt_t_over_f_times():
    sampler = create_sampler("repeat_factor", LABELS, seed=1, repeat_threshold=0.1)
    r = np.maximum(1, np.sqrt(0.1 / (np.array([1000, 100, 10]) / 1110)))  # [1, 1.054, 3.33]
    assert len(sampler) == int(np.floor((r * [1000, 100, 10]).sum()))
    per_class = []
    for e in range(50):
        sampler.set_epoch(e)
        drawn = list(sampler)
        assert len(drawn) == len(sampler)  # fixed epoch length: Lightning's step count holds
        times = np.bincount(drawn, minlength=len(LABELS))
        assert set(times[LABELS == 2]) <= {2, 3, 4} and set(times[LABELS == 0]) <= {0, 1}  # floor or ceil (+1 cut)
        per_class.append(np.bincount(LABELS[drawn], minlength=3))
    np.testing.assert_allclose(np.mean(per_class, 0), r * [1000, 100, 10], rtol=0.01)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_draws_depend_on_seed_and_epoch_only_so_a_resume_replays_them(name):
    a = create_sampler(name, LABELS, seed=7, repeat_threshold=0.1)
    a.set_epoch(4)
    first = list(a)
    assert list(a) == first  # iterating again replays the epoch
    fresh = create_sampler(name, LABELS, seed=7, repeat_threshold=0.1)  # a restarted process
    fresh.set_epoch(4)
    assert list(fresh) == first
    fresh.set_epoch(5)
    assert list(fresh) != first
    other = create_sampler(name, LABELS, seed=8, repeat_threshold=0.1)
    other.set_epoch(4)
    assert list(other) != first


@pytest.mark.parametrize("name", ["class_balanced", "repeat_factor"])
def test_two_gpus_split_one_draw_and_each_keeps_the_balance(name):
    """Lightning's DistributedSamplerWrapper (podium turns Lightning's replacement off and shards with its own
    ShardedSampler, below) also gives each rank a share of one draw when every rank builds the sampler from the same
    seed."""
    ranks = []
    for rank in range(2):
        sampler = create_sampler(name, LABELS, seed=3, repeat_threshold=0.1)
        wrapper = DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=False)
        wrapper.set_epoch(6)  # what Lightning calls; forwarded to our sampler
        assert sampler.epoch == 6
        ranks.append(list(wrapper))
    whole = create_sampler(name, LABELS, seed=3, repeat_threshold=0.1)
    whole.set_epoch(6)
    whole = list(whole)
    assert sorted(ranks[0] + ranks[1]) == sorted(whole + whole[: len(ranks[0]) + len(ranks[1]) - len(whole)])
    if name == "class_balanced":
        for drawn in ranks:
            np.testing.assert_allclose(np.bincount(LABELS[drawn], minlength=3) / len(drawn), [1 / 3] * 3, atol=0.05)


@pytest.mark.parametrize("name", ["random", "class_balanced", "repeat_factor"])
@pytest.mark.parametrize("world", [2, 3])
def test_shards_partition_one_padded_draw_per_epoch_and_keep_the_balance(name, world):
    """Each rank builds the sampler from the same seed and keeps items r, r + W, ...: together the ranks' shares are
    the one-process epoch plus its first items as padding, every rank the same length (DDP pairs up their batches),
    a new order each epoch, and the same after a restart."""
    whole = create_sampler(name, LABELS, seed=3, repeat_threshold=0.1)
    for epoch in (0, 6):
        whole.set_epoch(epoch)
        drawn = list(whole)
        shards = []
        for rank in range(world):
            shard = ShardedSampler(create_sampler(name, LABELS, seed=3, repeat_threshold=0.1), rank, world)
            shard.set_epoch(epoch)  # what Lightning calls; forwarded
            shards.append(list(shard))
            assert len(shards[-1]) == len(shard) == -(-len(drawn) // world)
        padding = len(shards[0]) * world - len(drawn)
        interleaved = [shards[r][j] for j in range(len(shards[0])) for r in range(world)]
        assert interleaved == drawn + drawn[:padding]
        if name == "class_balanced":
            for share in shards:
                np.testing.assert_allclose(np.bincount(LABELS[share], minlength=3) / len(share), [1 / 3] * 3,
                                           atol=0.08)  # 370 draws at W=3: 3 sd
    assert shards != [list(ShardedSampler(create_sampler(name, LABELS, 3, 0.1), r, world)) for r in range(world)]


def test_a_shard_smaller_than_the_world_wraps_around_and_a_bad_rank_is_refused():
    import torch

    shards = [list(ShardedSampler(torch.utils.data.SequentialSampler(range(2)), r, 3)) for r in range(3)]
    assert shards == [[0], [1], [0]]
    with pytest.raises(ValueError):
        ShardedSampler(torch.utils.data.SequentialSampler(range(2)), 3, 3)


def test_sharded_draws_are_numbered_in_the_whole_epoch_so_every_batch_gets_its_own_seed():
    """NumberedDraws over a shard numbers each item by its place in the epoch's whole list: the ranks' batches get
    distinct augmentation seeds (numbered per shard, rank 1's batch b would repeat rank 0's)."""
    batch, world = 8, 2
    seeds, positions = [], []
    for rank in range(world):
        draws = NumberedDraws(ShardedSampler(create_sampler("random", LABELS, seed=1, repeat_threshold=0.1), rank,
                                             world))
        draws.set_epoch(2)
        items = list(draws)
        assert all(d.epoch == 2 for d in items)
        assert [d.number for d in items] == list(range(rank, world * len(items), world))
        seeds += [batch_seed(5, items[b], batch) for b in range(0, len(items), batch)]
        positions += [d.position for d in items]
    assert len(set(seeds)) == len(seeds)
    whole = create_sampler("random", LABELS, seed=1, repeat_threshold=0.1)
    whole.set_epoch(2)
    assert sorted(positions) == sorted(list(whole))  # 1110 items: even, no padding


def test_registry_matches_the_config_choices_and_is_listed():
    assert list(SAMPLERS) == ["random", "class_balanced", "sqrt", "repeat_factor"] and TrainConfig().sampler == "auto"
    lines = SAMPLERS.lines()
    assert [line.split()[0] for line in lines] == [*SAMPLERS, "auto"]
    assert TrainConfig().resolved_sampler() == "random"
    assert TrainConfig(stage="classifier", init_from="runs/x").resolved_sampler() == "class_balanced"
    assert isinstance(create_sampler("repeat_factor", LABELS, 0, 0.1), RepeatFactorSampler)
