"""Streaming, resumable conversion of an image-folder source into the cache's split arrays.

The whole split is never in memory. Images are decoded in parallel, a bounded number at a time,
and each lands by ``os.pwrite`` at its row of a staging ``.npy`` (plain writes: a full disk is
an error, never SIGBUS). A one-byte status per image (0 to do, 1 stored, 2 unreadable) is
written only after the rows it covers are on disk (``fsync``), every ``CHECKPOINT`` images, so an
interrupted conversion resumes where it stopped and a status of 1 always means a stored row.

The staging folder ``.<dataset>.partial/`` is keyed by the source's fingerprint. Conversion ends
by checking that the bytes decoded are the bytes fingerprinted (a folder: every file's SHA-256
in the fingerprint's order; an archive: its SHA-256 again), so a source edited while it was
being converted is reported, not cached under the old fingerprint. The finished dataset
appears by one atomic rename, ``meta.json`` inside it; an exclusive lock makes a second process
converting the same source wait and then use the first one's result.

    convert_image_source(src, fingerprint, layout, source="imgs/", verify=check, progress=None)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lib import config
from lib.data.cifar import ProgressFn
from lib.data.decode import decode_image_bytes, image_size
from lib.data.folders import ImageSource, Listing, split_order, storage_side
from lib.data.meta import DatasetMeta
from lib.errors import CacheWriteError, DataSourceError
from lib.store.atomic import (
    atomic_dir,
    check_free_space,
    check_writable,
    describe_os_error,
    read_json,
    write_json_atomic,
)
from lib.store.layout import DATASET_FILES, CacheLayout

CHECKPOINT = 4096  # images between durable checkpoints: an interruption costs seconds of work
PLAN_VERSION = 1
TODO, STORED, UNREADABLE = 0, 1, 2
# Verify: given the SHA-256 of every image's bytes in listing order (None for an archive), raise
# DataSourceError if the source no longer matches its fingerprint.
Verify = Callable[[Listing, np.ndarray | None], None]


def convert_image_source(
    src: ImageSource,
    listing: Listing,
    fingerprint: str,
    layout: CacheLayout,
    source: str,
    verify: Verify,
    progress: ProgressFn | None = None,
    workers: int | None = None,
) -> Path:
    """Convert ``src`` into ``layout.dataset_dir(fingerprint)`` (if not already there) and return that folder."""
    target = layout.dataset_dir(fingerprint)
    check_writable(target)
    with _exclusive(layout.dataset_lock(fingerprint), progress):
        if DatasetMeta.read(target) is not None:
            return target  # another process finished it while we waited
        partial = layout.dataset_staging(fingerprint)
        job = _Job(src, listing, fingerprint, partial, progress, workers or os.cpu_count() or 2)
        try:
            job.run()
            verify(listing, job.digests())
        except DataSourceError:
            shutil.rmtree(partial, ignore_errors=True)  # rows of a source that changed are of no later use
            raise
        job.install(target, source)
        shutil.rmtree(partial, ignore_errors=True)
    return target


@contextlib.contextmanager
def _exclusive(lock_path: Path, progress: ProgressFn | None) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (another converter of the same dataset waits, saying so)."""
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock_path, "a+b")
    except OSError as err:
        raise CacheWriteError(describe_os_error(err, lock_path)) from err
    try:
        said = False
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if progress and not said:
                    progress(0, 1, "waiting for another process converting this dataset")
                    said = True
                time.sleep(0.2)
        yield
    finally:
        fh.close()  # releases the lock


class _Job:
    """One conversion: its plan, staging files and status bytes under ``partial``."""

    def __init__(
        self,
        src: ImageSource,
        listing: Listing,
        fingerprint: str,
        partial: Path,
        progress: ProgressFn | None,
        workers: int,
    ) -> None:
        self.src, self.listing, self.fingerprint, self.partial = src, listing, fingerprint, partial
        self.progress, self.workers = progress, workers
        self.keeps_digests = not src.sequential  # an archive is checked by its own hash instead
        self.n = len(listing)
        self.side = 0
        self.fds: dict[str, int] = {}
        self.pixels = PixelBudget(config.MAX_PIXELS_IN_FLIGHT)
        self.offsets: dict[str, tuple[int, int]] = {}  # split -> (first position, header bytes)

    # ------------------------------------------------------------------ plan and staging files

    def _open_plan(self) -> None:
        plan = read_json(self.partial / DATASET_FILES.plan)
        expected = {
            "fingerprint": self.fingerprint,
            "images": self.n,
            "splits": list(self.listing.splits),
            "version": PLAN_VERSION,
        }
        if not (
            isinstance(plan, dict)
            and all(plan.get(k) == v for k, v in expected.items())
            and isinstance(plan.get("side"), int)
        ):
            # No plan, or one of another listing: whatever is there is this project's own staging folder; start over.
            shutil.rmtree(self.partial, ignore_errors=True)
            try:
                self.partial.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise CacheWriteError(describe_os_error(err, self.partial)) from err
            plan = {**expected, "side": self._measure_side()}
            write_json_atomic(self.partial / DATASET_FILES.plan, plan)
        self.side = int(plan["side"])

    def _measure_side(self) -> int:
        """Read every image's header (never its pixels) for the storage side."""
        sizes: list[tuple[int, int]] = []
        total = self.n
        if self.src.sequential:
            for i, (_, data) in enumerate(self.src.stream()):  # type: ignore[union-attr]
                if (s := image_size(data)) is not None:
                    sizes.append(s)
                self._report(i + 1, total, "scan")
        else:
            with ThreadPoolExecutor(self.workers) as pool:
                for i, s in enumerate(pool.map(self._header, self.listing.refs, chunksize=256)):
                    if s is not None:
                        sizes.append(s)
                    self._report(i + 1, total, "scan")
        if not sizes:
            raise DataSourceError(f"None of the {self.n:,} files in the source could be read as an image.")
        return storage_side(sizes)

    def _header(self, ref: str) -> tuple[int, int] | None:
        try:
            return self.src.header_size(ref)  # type: ignore[union-attr]
        except FileNotFoundError as err:
            raise changed_error(f"{ref} disappeared") from err

    def _open_files(self) -> None:
        row = self.side * self.side * 3
        stale: list[tuple[int, int]] = []
        for split in self.listing.splits:
            start, end = self.listing.split_range(split)
            path = self.partial / DATASET_FILES.images(split)
            header = _npy_header((end - start, self.side, self.side, 3))
            fd, fresh = self._open(path, len(header) + (end - start) * row)
            os.pwrite(fd, header, 0)
            self.fds[split] = fd
            self.offsets[split] = (start, len(header))
            if fresh:
                stale.append((start, end))
        self.status_fd, _ = self._open(self.partial / DATASET_FILES.status, self.n)
        self.digest_fd, fresh = (
            self._open(self.partial / DATASET_FILES.digests, 32 * self.n) if self.keeps_digests else (-1, False)
        )
        for start, end in [(0, self.n)] if fresh else stale:
            os.pwrite(self.status_fd, bytes(end - start), start)  # rows of a file made anew are to do again

    def _open(self, path: Path, size: int) -> tuple[int, bool]:
        """An open descriptor of ``path`` at ``size`` bytes, and whether it was made or resized now (its rows are not
        valid)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            fresh = os.fstat(fd).st_size != size
            if fresh:
                os.ftruncate(fd, 0)
                os.ftruncate(fd, size)  # sparse: space is taken as rows land
            return fd, fresh
        except OSError as err:
            raise CacheWriteError(describe_os_error(err, path)) from err

    def _close(self) -> None:
        for fd in [*self.fds.values(), getattr(self, "status_fd", -1), getattr(self, "digest_fd", -1)]:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.fds = {}

    def status(self) -> np.ndarray:
        return np.frombuffer(os.pread(self.status_fd, self.n, 0), np.uint8) if self.n else np.zeros(0, np.uint8)

    def digests(self) -> np.ndarray | None:
        """SHA-256 of every image's bytes, in listing order (after :meth:`run`; None for an archive)."""
        return self.digests_now

    def _read_digests(self) -> np.ndarray:
        raw = os.pread(self.digest_fd, 32 * self.n, 0)
        return np.frombuffer(raw, np.uint8).reshape(self.n, 32)

    # ------------------------------------------------------------------ decoding

    def run(self) -> None:
        self._open_plan()
        self._check_space()
        self._open_files()
        try:
            status = self.status()
            todo = np.flatnonzero(status == TODO)
            done = self.n - len(todo)
            self._report(done, self.n, "decode")
            if len(todo):
                self._decode(todo, done)
        except OSError as err:
            raise CacheWriteError(describe_os_error(err, self.partial)) from err
        finally:
            opened = bool(self.fds)
            self.status_now = self.status() if opened else np.zeros(0, np.uint8)
            self.digests_now = self._read_digests() if opened and self.keeps_digests else None
            self._close()

    def _check_space(self) -> None:
        # The staging arrays, and a compacted copy of a split with unreadable images at the end.
        need = self.n * self.side * self.side * 3
        have = sum(f.stat().st_blocks * 512 for f in DATASET_FILES.image_arrays(self.partial))
        check_free_space(self.partial, max(0, need - have) + need // 2, "converting this dataset")

    def _decode(self, todo: np.ndarray, done: int) -> None:
        position = {ref: i for i, ref in enumerate(self.listing.refs)} if self.src.sequential else None
        wanted = set(todo.tolist()) if self.src.sequential else None
        pending: deque[Future[tuple[int, np.ndarray | None, bytes]]] = deque()
        finished: list[tuple[int, int]] = []  # (position, status) not yet checkpointed
        limit = 4 * self.workers

        def drain(keep: int) -> None:
            """Store finished images in order until at most ``keep`` are pending (and the oldest is still running)."""
            nonlocal done
            while len(pending) > keep or (pending and pending[0].done()):
                finished.append(self._store(*pending.popleft().result()))
                if len(finished) >= CHECKPOINT:
                    done = self._checkpoint(finished, done)

        with ThreadPoolExecutor(self.workers) as pool:
            for pos, load in self._loads(todo, position, wanted):
                pending.append(pool.submit(self._work, pos, load))
                drain(limit - 1)
            drain(0)
        self._checkpoint(finished, done)
        missing = int(np.count_nonzero(self.status() == TODO))
        if missing:
            raise changed_error(f"{missing:,} listed images were not found in it")

    def _loads(
        self, todo: np.ndarray, position: dict[str, int] | None, wanted: set[int] | None
    ) -> Iterator[tuple[int, Callable[[], bytes]]]:
        if position is None:
            for pos in todo.tolist():
                ref = self.listing.refs[pos]
                yield pos, (lambda ref=ref: self.src.read(ref))  # type: ignore[union-attr,misc]
            return
        assert wanted is not None
        for name, data in self.src.stream():  # type: ignore[union-attr]
            pos = position.get(name)
            if pos is not None and pos in wanted:
                wanted.discard(pos)  # a name twice in an archive: the first copy, as the listing's sort keeps
                yield pos, (lambda data=data: data)  # type: ignore[misc]

    def _work(self, pos: int, load: Callable[[], bytes]) -> tuple[int, np.ndarray | None, bytes]:
        try:
            data = load()
        except FileNotFoundError as err:
            raise changed_error(f"{self.listing.refs[pos]} disappeared") from err
        digest = hashlib.sha256(data).digest() if self.keeps_digests else b""
        width, height = image_size(data) or (0, 0)
        with self.pixels.hold(width * height):
            return pos, decode_image_bytes(data, self.side), digest

    def _store(self, pos: int, img: np.ndarray | None, digest: bytes) -> tuple[int, int]:
        if digest:
            os.pwrite(self.digest_fd, digest, 32 * pos)
        if img is None:
            return pos, UNREADABLE
        split = self.listing.splits[int(self.listing.split_of[pos])]
        start, header = self.offsets[split]
        os.pwrite(
            self.fds[split], np.ascontiguousarray(img, dtype=np.uint8).tobytes(), header + (pos - start) * img.nbytes
        )
        return pos, STORED

    def _checkpoint(self, finished: list[tuple[int, int]], done: int) -> int:
        """Make the rows durable, then mark them: a status byte never promises a row that is not on disk."""
        if not finished:
            return done
        for fd in [*self.fds.values(), self.digest_fd]:
            if fd >= 0:
                os.fsync(fd)
        for pos, state in finished:
            os.pwrite(self.status_fd, bytes([state]), pos)
        os.fsync(self.status_fd)
        done += len(finished)
        finished.clear()
        if self.progress:
            self.progress(done, self.n, "decode")
        return done

    def _report(self, done: int, total: int, stage: str) -> None:
        if self.progress and (done % 2000 == 0 or done == total):
            self.progress(done, total, stage)

    # ------------------------------------------------------------------ the finished dataset

    def install(self, target: Path, source: str) -> None:
        """Write the split arrays, labels and ``meta.json`` into a temp folder, then rename it onto ``target``."""
        status, row = self.status_now, self.side * self.side * 3
        counts, skipped = {}, {}
        with atomic_dir(target) as tmp:
            for split in self.listing.splits:
                start, end = self.listing.split_range(split)
                ok = status[start:end] == STORED
                staged = self.partial / DATASET_FILES.images(split)
                if ok.all():
                    _link_or_copy(staged, tmp / staged.name)  # every row stored: the staging file is the array
                else:
                    _compact(
                        staged,
                        tmp / staged.name,
                        np.flatnonzero(ok),
                        self.side,
                        row,
                        _npy_header((end - start, self.side, self.side, 3)),
                    )
                labels = self.listing.class_of[start:end][ok]
                np.save(tmp / DATASET_FILES.labels(split), labels.astype(np.int64))
                counts[split] = np.bincount(labels, minlength=len(self.listing.classes)).astype(int).tolist()
                skipped[split] = int(np.count_nonzero(~ok))
            if not any(sum(c) for c in counts.values()):
                raise DataSourceError(f"Data source {source!r} contains no readable images.")
            DatasetMeta(
                self.src.kind,
                source,
                list(self.listing.classes),
                sorted(self.listing.splits, key=split_order),
                counts,
                skipped,
                [self.side, self.side, 3],
            ).write(tmp)


class PixelBudget:
    """At most ``limit`` decoded pixels in flight across threads; an image larger than the whole budget waits until it
    decodes alone. Bounds a conversion's memory by pixels, not by images (one 9000x9000 PNG is 243 MB as RGB)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Wait for room for ``pixels``, hold it while the block runs."""
        with self.cond:
            self.cond.wait_for(lambda: self.used == 0 or self.used + pixels <= self.limit)
            self.used += pixels
        try:
            yield
        finally:
            with self.cond:
                self.used -= pixels
                self.cond.notify_all()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no copy; the staging file stays valid until the staging folder goes), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _compact(staged: Path, out: Path, keep: np.ndarray, side: int, row: int, staged_header: bytes) -> None:
    """Copy the stored rows of ``staged`` into a new ``.npy`` of just those rows, a block at a time."""
    block = max(1, (32 << 20) // row)
    with open(staged, "rb") as src, open(out, "wb") as dst:
        dst.write(_npy_header((len(keep), side, side, 3)))
        for i in range(0, len(keep), block):
            for pos in keep[i : i + block].tolist():
                dst.write(os.pread(src.fileno(), row, len(staged_header) + pos * row))


def changed_error(detail: str) -> DataSourceError:
    """The error for a source whose contents no longer match the fingerprint it is being converted under."""
    return DataSourceError(
        f"The dataset changed while it was being converted ({detail}); nothing was cached. Convert it again once it "
        "is no longer being written to."
    )
