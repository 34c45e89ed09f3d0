"""The mirror's cost on training: fold 0 of the digits demo trained with and without `--mirror s3://...`, side by
side in one process, against a local S3 API (moto's server in its own process on 127.0.0.1, as a remote store is).

Rounds alternate (no mirror, mirror, no mirror, ...) so machine noise hits both alike; each round trains a new run.
Time per epoch = the gap between consecutive epoch starts (training, validation, checkpoints, metrics: everything the
loop does), the first epoch (warm-up) left out. Also: what the mirror uploaded per run (files, bytes).

    python benchmarks/mirror.py [--epochs 6] [--rounds 3] [--n 1437] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

RESULTS = Path(__file__).parent / "results" / "mirror.json"


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/").close()
            break
        except OSError:
            time.sleep(0.1)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint)
    return proc, endpoint


def clock_epochs(starts: list[float]):
    """Wrap podium.engine.fold.make_trainer so every Trainer appends its epoch start times (and its end) to `starts`."""
    import lightning.pytorch as pl

    import podium.engine.fold as fold

    class EpochClock(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            starts.append(time.perf_counter())

        def on_train_end(self, trainer, module):
            starts.append(time.perf_counter())

    make = fold.make_trainer

    def timed(*a, **kw):
        trainer = make(*a, **kw)
        trainer.callbacks.append(EpochClock())
        return trainer

    fold.make_trainer = timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="pairs of (no mirror, mirror) runs")
    parser.add_argument("--n", type=int, default=None, help="training images (default all 1,437)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import fsspec

    from podium.commands.demo import demo_config
    from podium.commands.train import train
    from podium.data.datasets import make_digits
    from podium.run.store import Store

    starts: list[float] = []
    clock_epochs(starts)
    moto, endpoint = start_moto()
    try:
        fsspec.filesystem("s3", skip_instance_cache=True).mkdir("bench")
        rows = {"none": [], "s3": []}
        uploaded = []
        with tempfile.TemporaryDirectory() as tmp:
            make_digits(Path(tmp) / "data", args.n)  # where demo_config looks: <out>/data
            base = demo_config(Path(tmp), args.epochs)
            for r in range(args.rounds):
                for kind in ("none", "s3"):
                    cfg = base.model_copy(update={"name": f"r{r}-{kind}"})
                    starts.clear()
                    train(cfg, folds=[0], mirror="s3://bench/runs" if kind == "s3" else None)
                    rows[kind].append(statistics.mean([b - a for a, b in zip(starts[1:], starts[2:])]))
                    print(f"round {r} {kind:>4}: {rows[kind][-1]:.3f} s/epoch", flush=True)
                    if kind == "s3":
                        store = Store(f"s3://bench/runs/{cfg.name}")
                        manifests = store.manifests()
                        uploaded.append({"files": sum(len(m["files"]) for m in manifests.values()),
                                         "bytes": sum(e["size"] for m in manifests.values()
                                                      for e in m["files"].values()),
                                         "fold_published_done": "fold0/done.json" in manifests["fold0"]["files"]})
    finally:
        moto.terminate()
        moto.wait()
    plain, mirrored = statistics.median(rows["none"]), statistics.median(rows["s3"])
    overhead = (mirrored - plain) / plain
    print(f"\n{'':24}{'no mirror':>12}{'--mirror s3':>14}")
    print(f"{'seconds per epoch':24}{plain:>12.3f}{mirrored:>14.3f}")
    print(f"{'overhead':24}{'':>12}{overhead:>+14.1%}   (target <= 2%)")
    print(f"mirrored per run: {uploaded[-1]['files']} files, {uploaded[-1]['bytes'] / 2**20:.1f} MiB")
    write_results(args.out, {"benchmark": "mirror", "epochs": args.epochs, "rounds": args.rounds,
                             "n_train": args.n or 1437, "model": base.model.name, "store": "moto server (S3 API) on "
                             "127.0.0.1, own process", "seconds_per_epoch": rows,
                             "median_seconds_per_epoch": {"none": round(plain, 4), "s3": round(mirrored, 4)},
                             "overhead": round(overhead, 4), "mirrored": uploaded})


if __name__ == "__main__":
    main()
