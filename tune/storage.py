"""Sweeps on an object store: `--storage s3://bucket/prefix` (any URI pyarrow's filesystems take).

On a Ray cluster without a shared disk (KubeRay, most clouds) the only storage every node
reaches is an object store. A sweep there works like this:

* Ray Tune keeps its experiment in the store (`storage_path` + `storage_filesystem`): its state,
  every trial's checkpoints (a killed trial resumes from the store on any node) and each trial's
  working directory, which the trial uploads at every checkpoint and at its end (the artifacts,
  `SyncConfig(sync_artifacts=True)`): the trainer writes its files (config, progress, metrics,
  per-example predictions) into `<working dir>/trainer/`, so they reach
  `<uri>/ray/<trial_id>/trainer/` (tune/trainable.py).
* The driver writes every file it owns (space.json, splits, results table, predictions.npz,
  reseed.json, the report) into a local mirror of the sweep directory, as on a local disk, and
  uploads each one after writing it (`RemoteSweep.push`).
* Trials read the shared splits from the store (`fetch_splits`, once per node).
* `--resume URI` and `s4l-report URI` first download the sweep's own files into the mirror.

Credentials and endpoint come from the environment as for any pyarrow/boto client
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL` for an S3-compatible server).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import tempfile
from pathlib import Path

from s4l_models.errors import UserError, first_line
from s4l_models.io import free_path

# The sweep directory's own files (everything else lives in Ray's experiment in the store).
SWEEP_FILES = ("space.json", "splits.npz", "splits.json", "results.parquet", "results.csv",
               "predictions.npz", "reseed.json")


def is_uri(value) -> bool:
    return value is not None and "://" in str(value)


def sweep_uri(storage, name: str) -> str:
    """The URI of sweep `name` under an object-store `--storage` URI."""
    return f"{str(storage).rstrip('/')}/{name}"


class StoreError(UserError, OSError):
    """The object store cannot be used (unreachable, no such bucket, access denied): one line
    naming the URI and what to check. An OSError too, so that the uploads a sweep makes only
    in passing (tune/runner.py) still carry on past it."""


def store_error(uri: str, err: BaseException) -> StoreError:
    first = first_line(err)
    return StoreError(f"{uri}: the object store cannot be reached or refused the request "
                      f"({first}); check the URI's bucket, AWS_ENDPOINT_URL and the "
                      "credentials, then rerun")


def check_uri(uri: str) -> None:
    """A one-line error for an object-store URI without a bucket (s3://, s3:///prefix): pyarrow
    takes those as the store's root and fails later with 'Path cannot start with a separator'."""
    from urllib.parse import urlsplit

    parts = urlsplit(str(uri))
    if parts.scheme.lower() not in ("", "file", "local", "mock") and not parts.netloc:
        raise UserError(f"{uri}: no bucket in this storage URI; give it as "
                        f"{parts.scheme}://BUCKET/PREFIX")


@functools.lru_cache(maxsize=32)
def filesystem(uri: str):
    """(pyarrow filesystem, path inside it) of a URI; a one-line error when it cannot be used.
    Cached per URI: a run opens its sweep's store from several places (start, Tuner, the end),
    and an S3 filesystem is a client with its own connection pool, worth building once."""
    import pyarrow.fs as pafs

    check_uri(uri)
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as err:  # unknown scheme, missing credentials library, bad URI
        raise UserError(f"{uri}: cannot open this storage URI ({first_line(err)}); give an "
                        "s3://, gs:// or file:// URI that pyarrow can reach, or a local folder"
                        ) from None


def mirror_dir(uri: str) -> Path:
    """The local mirror of a remote sweep directory (one per URI on this machine)."""
    key = hashlib.sha1(uri.rstrip("/").encode()).hexdigest()[:12]
    base = Path(os.environ.get("S4L_MIRROR_DIR") or Path(tempfile.gettempdir()) / "s4l-tune")
    return base / key / uri.rstrip("/").rsplit("/", 1)[-1]


class RemoteSweep:
    """A sweep directory in an object store and its local mirror."""

    def __init__(self, uri: str, local: Path | None = None):
        check_uri(uri)  # as given: "s3://" stripped of its slashes would read "s3:"
        self.uri = uri.rstrip("/")
        self.fs, self.root = filesystem(self.uri)
        self.local = Path(local) if local is not None else mirror_dir(self.uri)

    def remote(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def uri_of(self, rel: str) -> str:
        return f"{self.uri}/{rel}" if rel else self.uri

    def exists(self, rel: str) -> bool:
        import pyarrow.fs as pafs

        try:
            return self.fs.get_file_info(self.remote(rel)).type != pafs.FileType.NotFound
        except OSError as err:
            raise store_error(self.uri, err) from None

    def push(self, *rels: str) -> None:
        """Upload these files or folders of the mirror (those that exist) to the store."""
        for rel in rels:
            src = self.local / rel
            if src.is_dir():
                for f in sorted(p for p in src.rglob("*") if p.is_file()):
                    self._put(f, f.relative_to(self.local).as_posix())
            elif src.is_file():
                self._put(src, rel)

    def _put(self, src: Path, rel: str) -> None:
        data = src.read_bytes()
        parent = self.remote(rel).rsplit("/", 1)[0]
        try:
            self.fs.create_dir(parent, recursive=True)
            with self.fs.open_output_stream(self.remote(rel)) as out:
                out.write(data)
        except OSError as err:
            raise store_error(self.uri, err) from None

    def pull(self, *rels: str, exact: bool = False) -> list[str]:
        """Download these files of the store into the mirror (those that exist); returns them.

        `exact` (a driver resuming the sweep): the store is the sweep, so a mirror file the
        store lacks is left over from an earlier sweep of the same name on this machine (say a
        reseed.json, which would make the resumed sweep skip its search). It is set aside as
        `<name>.not-in-store`, not deleted."""
        got = []
        self.local.mkdir(parents=True, exist_ok=True)
        for rel in rels:
            if not self.exists(rel):
                stale = self.local / rel
                if exact and stale.is_file():
                    os.replace(stale, free_path(stale.with_name(f"{stale.name}.not-in-store")))
                continue
            data = self.read_bytes(rel)
            dst = self.local / rel
            if dst.is_file() and dst.read_bytes() == data:
                got.append(rel)  # unchanged: keep its time stamp (s4l-report --watch)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, dst)
            got.append(rel)
        return got

    def read_bytes(self, rel: str) -> bytes:
        return _read(self.fs, self.remote(rel), self.uri)


def _read(fs, path: str, uri: str) -> bytes:
    """The bytes of `path` in `fs`; a store that fails is a StoreError naming `uri`."""
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except OSError as err:
        raise store_error(uri, err) from None


def read_uri_bytes(uri: str) -> bytes:
    """The bytes of one file given by URI (a trial's predictions in the store)."""
    fs, path = filesystem(uri)
    return _read(fs, path, uri)


def open_uri(uri: str) -> io.BytesIO:
    return io.BytesIO(read_uri_bytes(uri))


def fetch_splits(uri: str, cache: Path) -> Path:
    """The sweep's split files from the store into a node-local folder (once); returns it."""
    if not (cache / "splits.npz").is_file():
        RemoteSweep(uri, cache).pull("splits.npz", "splits.json")
    return cache


__all__ = ["SWEEP_FILES", "RemoteSweep", "StoreError", "check_uri", "is_uri", "sweep_uri", "filesystem", "mirror_dir", "open_uri",
           "read_uri_bytes", "fetch_splits"]
