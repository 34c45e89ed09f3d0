"""`--mirror URL` around `podium train` and `podium predict`, and `podium pull` (docs/mirror.md).

The mirror of a run is <URL>/<name> (URL is a prefix, like output_dir). Around the fold loop of `podium train`:
before it, what the mirror holds and this machine lacks is restored (podium.run.pull); each fold this process trains
is leased in the mirror (podium.run.lease) and published as it is written (podium.run.mirror); after it, the folds
finished on other machines are brought in, so the merged OOF and metrics cover every finished fold.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from podium.errors import PodiumError, fmt_list
from podium.run import lease
from podium.run.folddir import FoldDir
from podium.run.merge import merge_folds
from podium.run.mirror import Mirror
from podium.run.pull import mirror_config, mirror_folds, pull, restore_finished, restore_for_training, restore_part
from podium.run.rundir import RunDir


def mirror_url(prefix: str, name: str) -> str:
    """The mirror of run `name` under the prefix `prefix`."""
    return f"{prefix.rstrip('/')}/{name}"


class TrainMirror:
    """The mirror's side of `podium train`; with no URL, or in a process that must not write (ranks > 0 of a
    multi-device run), every method does nothing."""

    def __init__(self, url: str | None, rd: RunDir, writer: bool, note: Callable[[str], None]):
        self.rd, self.note = rd, note
        self.mirror = Mirror(rd.path, url, writer=True, note=note) if url and writer else None
        self.store = self.mirror.store if self.mirror else None

    def __enter__(self) -> "TrainMirror":
        return self

    def __exit__(self, *exc) -> None:
        if self.mirror is not None:
            self.mirror.close()

    def restore(self, to_train: list[int], overwrite: bool, differs: Callable[[Path], list[str]]) -> None:
        """Bring in what the mirror holds and this folder lacks; then start publishing. `differs(config.yaml)`: the
        keys in which a run's config differs from the one in use. A mirror holding another run is refused (with
        `overwrite`: emptied, as the local run is). A store that fails is reported: training goes on locally."""
        if self.store is None:
            return
        try:
            manifests = self.store.manifests()
            with tempfile.TemporaryDirectory() as tmp:
                theirs = mirror_config(self.store, manifests, Path(tmp))
                changed = differs(theirs) if theirs is not None else []
            if changed and not overwrite:
                raise PodiumError(f"The mirror {self.store.url} holds a run made with a different config (it differs "
                                  f"in {fmt_list(changed)}). Pass --overwrite to replace it, or set name=... (or "
                                  "another --mirror) to train a new run.")
            if changed:
                self.note(f"mirror {self.store.url}: replacing the run it held (another config)")
                self.store.clear()
            elif not (self.rd.config.exists() and differs(self.rd.config)):  # else the local run is refused later
                done = restore_for_training(self.store, self.rd.path, to_train, overwrite, manifests)
                if done:
                    self.note(f"mirror {self.store.url}: fold(s) {fmt_list(done)} finished there")
        except PodiumError:
            raise
        except Exception as exc:  # the store fails: this machine trains on what it has, the thread retries
            self._failed("cannot read", exc)
        self.mirror.start()

    def lease(self, folds: list[int], overwrite: bool) -> None:
        """Lease every fold of `folds` this command may train; one leased by a live machine elsewhere: refused."""
        if self.store is None:
            return
        try:
            finished = {k for k, done in mirror_folds(self.store.manifests()).items() if done}
            for k in folds:
                if k in finished and not overwrite:
                    continue
                mine, holder = lease.take(self.store, k)
                if mine is None:
                    raise PodiumError(f"Fold {k} is being trained through the mirror {self.store.url} by "
                                      f"{lease.describe(holder)}. Train other folds (--folds, or --folds next), or "
                                      f"wait: a lease without a heartbeat for {lease.LEASE_TTL:.0f} s is taken over. "
                                      f"If that machine is gone, delete {self.store.url}/leases/fold{k}.json.")
                self.mirror.own(k, mine)
        except PodiumError:
            raise
        except Exception as exc:
            self._failed("cannot lease folds in", exc)
            for k in folds:  # unleased: published all the same once the store works again
                self.mirror.own(k, lease.new_lease(k))

    def _failed(self, what: str, exc: Exception) -> None:
        self.note(f"mirror {self.store.url}: {what} it ({type(exc).__name__}: {str(exc)[:200]}). Training goes on "
                  "locally; the mirror is retried in the background.")
        self.mirror.failing = f"{type(exc).__name__}: {str(exc)[:200]}"

    def next_fold(self, folds: list[int]) -> int | None:
        """The first fold finished nowhere and leased by no live machine, now leased by this process (its latest
        mirrored checkpoint restored, to resume a fold a dead machine started); None when no fold is left (and in a
        process that does not write: a multi-device run names its folds)."""
        if self.store is None:
            return None
        for k in folds:  # a failing store is a PodiumError here: without it, no fold can be taken safely
            try:
                manifests = self.store.manifests()
            except Exception as exc:
                raise PodiumError(f"--folds next: cannot read the mirror {self.store.url} ({type(exc).__name__}: "
                                  f"{exc}). Check the URL and credentials, or name the folds: --folds 0,2.") from None
            if mirror_folds(manifests).get(k) or self.rd.fold_dir(k).is_done():
                continue
            mine, _ = lease.take(self.store, k)
            if mine is None:
                continue
            if mirror_folds({f"fold{k}": self.store.manifest(f"fold{k}") or {"files": {}}}).get(k):
                lease.release(self.store, k, mine)  # finished and published between the look and the lease
                continue
            if not self.rd.fold_dir(k).has_checkpoint():
                restore_part(self.store, self.rd.path, f"fold{k}")
            self.mirror.own(k, mine)
            return k
        return None

    def poke(self) -> None:
        if self.mirror is not None:
            self.mirror.poke()

    def gather(self) -> list[int]:
        """The folds finished on other machines, brought into this run folder (without their last.ckpt)."""
        if self.store is None:
            return []
        try:
            got = restore_finished(self.store, self.rd.path, self.store.manifests())
        except Exception as exc:
            if not self.mirror.failing:
                self._failed("cannot read", exc)
            return []
        if got:
            self.note(f"mirror {self.store.url}: brought in fold(s) {fmt_list(got)} finished on other machines")
        return got


def predict_mirror(run: Path, prefix: str | None, note: Callable[[str], None]) -> Mirror | None:
    """`podium predict RUN --mirror URL`: RUN pulled first when it is not here; its new files published after."""
    if not prefix:
        return None
    url = mirror_url(prefix, run.name)
    if not RunDir(run).config.exists():
        pull_run(url, run, note)
    return Mirror(run, url, note=note)


def pull_run(url: str, dest: Path | None = None, note: Callable[[str], None] = print) -> dict:
    """`podium pull URL [DIR]`: the run restored and checked; when its merged OOF lacks a fold finished in the
    mirror (machines merged at the same moment), merged again here. DIR defaults to runs/<last part of URL>."""
    dest = Path(dest) if dest is not None else Path("runs") / url.rstrip("/").rsplit("/", 1)[-1]
    summary = pull(url, dest, note)
    rd = RunDir(dest)
    finished = [k for k in summary["folds_done"] if FoldDir(rd.fold(k)).is_done()]
    merged = rd.metrics().get("folds_done", []) if rd.metrics_json.exists() else []
    if finished and sorted(merged) != finished:
        merge_folds(dest, rd.load_config().cv.metric)
        note(f"merged the OOF of fold(s) {fmt_list(finished)} again (the mirror's covered "
             f"{fmt_list(merged) or 'none'})")
    return {**summary, "run": dest}
