"""A run's mirror in an object store (any fsspec URL: s3://, gs://, az://, file://, memory://): its layout and the
few operations podium does on it.

    <mirror>/objects/<part>/<sha256>     a file's bytes, named by their hash (in a folder: written as .tmp-*, renamed)
    <mirror>/manifests/<part>.json       what <part> holds now: {path: {sha256, size}}, written after its objects
    <mirror>/leases/fold<k>.json         held while a machine trains fold k: {host, pid, token, heartbeat}

A part is the run's own files ("run": config, folds, classes, merged OOF and scores, predictions) or one fold's
folder ("fold<k>"). Each part has its own manifest, so machines training different folds never write the same
manifest (the run part is rewritten by whichever machine merged last: merging is idempotent). A reader reads a
manifest, then the objects it names; a manifest is written only once every object it names is complete, so a
reader never sees one naming a missing or partial object.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import BinaryIO

from podium.errors import PodiumError

FORMAT = 1
CHUNK = 8 * 2**20


def open_store(url: str):
    """(filesystem, root path) of `url`; an unknown protocol or a missing fsspec driver is a PodiumError."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True)  # the environment's endpoint read now
    except (ImportError, ValueError) as exc:
        raise PodiumError(f"--mirror {url}: cannot open it ({exc}). Use an fsspec URL such as s3://bucket/runs, "
                          "file:///shared/runs or gs://bucket/runs, with its driver installed (s3fs, gcsfs, adlfs).")
    if is_local(fs):
        fs.auto_mkdir = True  # a folder is created as a file is written into it, as object stores do
    return fs, root.rstrip("/")


def is_local(fs) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


class Store:
    """One run's mirror: `url` is the run's own prefix (<mirror>/<name>)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.fs, self.root = open_store(self.url)

    def __repr__(self) -> str:
        return f"Store('{self.url}')"

    def _p(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def object_path(self, part: str, sha: str) -> str:
        return self._p("objects", part, sha)

    # ------------------------------------------------------------------ objects
    def has_object(self, part: str, sha: str, size: int) -> bool:
        try:
            return self.fs.info(self.object_path(part, sha)).get("size") == size
        except (FileNotFoundError, OSError):
            return False

    def put_object(self, part: str, sha: str, src: BinaryIO, size: int) -> None:
        """Copy `size` bytes of `src` to objects/<part>/<sha>, so that name only ever holds the whole file (a second
        machine uploading the same bytes included). A folder gets a temporary name, then a rename; an object store's
        upload is invisible until complete (a PUT, or a multipart upload's completion), so it goes straight to its
        name, unpublished until a manifest names it (a copy would double the requests of every checkpoint)."""
        if not is_local(self.fs):
            with self.fs.open(self.object_path(part, sha), "wb") as out:
                _copy(src, out, size)
            return
        tmp = self._p("objects", f".tmp-{secrets.token_hex(8)}")
        try:
            with self.fs.open(tmp, "wb") as out:
                _copy(src, out, size)
            self.fs.makedirs(self._p("objects", part), exist_ok=True)
            self.fs.mv(tmp, self.object_path(part, sha))
        except BaseException:
            try:
                self.fs.rm_file(tmp)
            except (FileNotFoundError, OSError):
                pass
            raise

    def read_object(self, part: str, sha: str) -> bytes:
        return self.fs.cat_file(self.object_path(part, sha))

    def remove_objects(self, part: str, shas: set[str]) -> None:
        for sha in shas:
            try:
                self.fs.rm_file(self.object_path(part, sha))
            except (FileNotFoundError, OSError):
                pass  # already gone: collecting garbage is best effort

    # ------------------------------------------------------------------ manifests
    def manifest_path(self, part: str) -> str:
        return self._p("manifests", f"{part}.json")

    def write_manifest(self, part: str, files: dict[str, dict], who: dict) -> None:
        """Publish `part`'s files in one step: an object store's PUT is atomic; a local folder gets a rename."""
        body = json.dumps({"format": FORMAT, "part": part, "files": files, **who}, indent=1).encode()
        path = self.manifest_path(part)
        if is_local(self.fs):
            tmp = self._p("manifests", f".tmp-{secrets.token_hex(8)}")
            self.fs.makedirs(self._p("manifests"), exist_ok=True)
            self.fs.pipe_file(tmp, body)
            self.fs.mv(tmp, path)
        else:
            self.fs.pipe_file(path, body)

    def manifest(self, part: str) -> dict | None:
        """`part`'s manifest; None when it has none. A damaged one is a PodiumError naming it."""
        try:
            raw = self.fs.cat_file(self.manifest_path(part))
        except FileNotFoundError:
            return None
        try:
            record = json.loads(raw)
            files = record["files"]
            ok = all(isinstance(v.get("sha256"), str) and isinstance(v.get("size"), int) for v in files.values())
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            raise PodiumError(f"The mirror's manifest '{self.url}/manifests/{part}.json' is damaged (not the JSON "
                              "podium writes). Push the run again from a machine that has it: `podium train CONFIG "
                              "--resume --mirror URL`.")
        return record

    def parts(self) -> list[str]:
        """Every published part: 'run' and fold<k>."""
        self.fs.invalidate_cache()
        try:
            names = self.fs.ls(self._p("manifests"), detail=False)
        except FileNotFoundError:
            return []
        out = [n.rsplit("/", 1)[-1][:-5] for n in names if n.endswith(".json") and "/.tmp-" not in n]
        return sorted(p for p in out if not p.startswith("."))

    def manifests(self) -> dict[str, dict]:
        return {part: m for part in self.parts() if (m := self.manifest(part)) is not None}

    def clear(self) -> None:
        """Remove every manifest and object (`podium train --overwrite` of a run made with another config)."""
        for folder in ("manifests", "objects"):
            try:
                self.fs.rm(self._p(folder), recursive=True)
            except FileNotFoundError:
                pass

    # ------------------------------------------------------------------ leases
    def lease_path(self, k: int) -> str:
        return self._p("leases", f"fold{k}.json")

    def create_lease(self, k: int, record: dict) -> bool:
        """Create fold k's lease if no one holds it: exclusive where the store allows it (a local folder: O_EXCL;
        S3: a conditional PUT, If-None-Match); elsewhere a check then a write (best effort)."""
        body = json.dumps(record).encode()
        path = self.lease_path(k)
        try:
            if is_local(self.fs):
                self.fs.makedirs(self._p("leases"), exist_ok=True)
                with self.fs.open(path, "xb") as out:  # LocalFileSystem opens the file itself with mode 'xb'
                    out.write(body)
            else:
                self.fs.pipe_file(path, body, mode="create")
        except FileExistsError:
            return False
        return True

    def lease(self, k: int) -> dict | None:
        try:
            record = json.loads(self.fs.cat_file(self.lease_path(k)))
        except FileNotFoundError:
            return None
        except ValueError:
            return {}  # being written, or damaged: held by someone, of unknown age
        return record if isinstance(record, dict) else {}

    def write_lease(self, k: int, record: dict) -> None:
        self.fs.pipe_file(self.lease_path(k), json.dumps(record).encode())

    def remove_lease(self, k: int) -> None:
        try:
            self.fs.rm_file(self.lease_path(k))
        except FileNotFoundError:
            pass


def _copy(src: BinaryIO, out: BinaryIO, size: int) -> None:
    left = size
    while left > 0:
        chunk = src.read(min(CHUNK, left))
        if not chunk:
            raise OSError(f"the local file shrank while it was uploaded ({left} bytes short)")
        out.write(chunk)
        left -= len(chunk)


def sha256_of(src: BinaryIO, size: int) -> str:
    """The hash of the first `size` bytes of `src` (a file still being appended to is read up to `size`)."""
    digest, left = hashlib.sha256(), size
    while left > 0:
        chunk = src.read(min(CHUNK, left))
        if not chunk:
            break
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def now() -> float:
    return time.time()
