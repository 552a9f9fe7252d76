"""``ferdata lbp`` on a shard folder: add ``lbp/<variant>`` to every listed shard, safely.

For each shard, under its lock ``shard-*.h5.lock`` (so two runs on one folder
serialise per shard and neither loses the other's dataset):

1. the file is checked against its manifest entry (size and sha256); a shard that
   does not match is reported and left untouched, never re-hashed into the manifest;
2. a copy with the dataset added is written and fsynced as a temp, and hashed;
3. the entry is marked ``pending`` with the temp's hash, the temp renamed over the
   shard, and the entry committed (``bytes``, ``sha256``, ``lbp``) before the lock is
   released. A crash between the rename and the commit leaves a file matching
   ``pending``, which the next run commits (a file matching neither is corruption).

Each shard is recorded as it completes, so a bad shard or a killed worker loses no
other shard's work; the bad ones are listed in one error at the end.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import FerdataError, ShardError
from ..shards.manifest import entry_problem, file_sha256, load_manifest, set_entry_state, shard_lbp
from ..atomic import file_lock, fsync_file, publish, remove_dead_temps
from .lbp import dataset_name


def _differs(path: Path, what: str) -> ShardError:
    """The error of a shard whose ``what`` (size or sha256) differs from its manifest entry."""
    return ShardError(f"{path}: {what} differs from the manifest (corrupt or modified outside ferdata); "
                      "left untouched, see `ferdata verify`")


def _trusted_entry(folder: Path, shard: str) -> dict:
    """The shard's manifest entry once its file is checked against it (raises ShardError)."""
    path = folder / shard
    e = load_manifest(folder)["shards"].get(shard)
    if e is None:
        raise ShardError(f"{path}: not listed in {folder / 'manifest.json'}")
    why = entry_problem(e)
    if why:
        raise ShardError(f"{path}: {why}; left untouched")
    if not path.exists():
        raise ShardError(f"{path}: listed in the manifest but missing")
    size, sha = path.stat().st_size, None
    if size == e["bytes"]:
        sha = file_sha256(path)
        if sha == e["sha256"]:
            return e if "pending" not in e else set_entry_state(folder, shard, e["sha256"], pending=None)
    pending = e.get("pending") or {}
    if size == pending.get("bytes") and (sha or file_sha256(path)) == pending.get("sha256"):
        # renamed by a run killed before its manifest update: finish that update
        return set_entry_state(folder, shard, e["sha256"], bytes=pending["bytes"], sha256=pending["sha256"],
                               lbp=pending.get("lbp", []), pending=None)
    raise _differs(path, "size" if size != e["bytes"] else "sha256")


def _entry_to_check(folder: Path, shard: str, checker):
    """``(entry, future sha256 of the file or None)``: the common case (a plain entry and a
    file of its size) starts the file's hash on ``checker`` and trusts the file for now
    (:func:`_verified` before anything is written from it); any other case is checked
    here (:func:`_trusted_entry`)."""
    path = folder / shard
    e = load_manifest(folder)["shards"].get(shard)
    if e is None or entry_problem(e) or "pending" in e or not path.exists() or path.stat().st_size != e["bytes"]:
        return _trusted_entry(folder, shard), None
    return e, checker.submit(file_sha256, path)


def _verified(path: Path, e: dict, check) -> None:
    """Raise the shard's ShardError if its hash (``check``, a future) differs from ``e``."""
    if check is not None and check.result() != e["sha256"]:
        raise _differs(path, "sha256")


def _begin(folder: Path, shard: str, spec: tuple, threads: int, progress, checker):
    """Under the shard's lock: check it, write the temp with the codes added (flushed; the
    pipeline fsyncs it). ``None`` if the shard has the dataset already, else ``(entry,
    temp, check)``: ``check`` is the future of the file's hash, taken on ``checker`` while
    the codes are made (or None if the file was checked here), for :func:`_verified`
    before the temp is used (a file that fails is reported as such, whatever else went
    wrong with it)."""
    from .lbp_h5 import lbp_copy

    path = folder / shard
    e, check = _entry_to_check(folder, shard, checker)
    try:
        present = shard_lbp(path)
        if dataset_name(*spec) in present:
            _verified(path, e, check)
            if sorted(e.get("lbp", [])) != present:
                set_entry_state(folder, shard, e["sha256"], lbp=present)
            return None
        return e, lbp_copy(path, *spec, threads=threads, progress=progress, sync=False), check
    except (FerdataError, OSError, RuntimeError):
        _verified(path, e, check)
        raise


def _finish(folder: Path, shard: str, e: dict, tmp: Path, sha: str) -> None:
    """Still under the lock: mark pending, rename the temp over the shard, commit (module doc)."""
    try:
        new = {"bytes": tmp.stat().st_size, "sha256": sha, "lbp": shard_lbp(tmp)}
        set_entry_state(folder, shard, e["sha256"], pending=new)
        publish(tmp, folder / shard)
    finally:
        tmp.unlink(missing_ok=True)
    set_entry_state(folder, shard, e["sha256"], pending=None, **new)


def _sync_and_finish(folder: Path, shard: str, e: dict, tmp: Path, check) -> None:
    """Once the source shard's ``check`` has passed: fsync the temp (before it may be
    renamed), hash it (from the page cache), then :func:`_finish` it: on the pipeline's
    thread, under the lock its caller holds."""
    _verified(folder / shard, e, check)   # a failed check: _close removes the temp
    fsync_file(tmp)
    _finish(folder, shard, e, tmp, file_sha256(tmp))


class _Pipeline:
    """Shards one after the other; while shard k+1 is coded, a thread fsyncs and hashes
    shard k's temp, renames it and commits it (its manifest writes, fsynced too, wait for
    the disk off the coding path). Shard k's lock, taken by this thread, is released here
    once that is done (at most two shard locks are held, both by this thread). Open shards
    (coded, their finish running or done) wait in ``open``, oldest first."""

    def __init__(self, folder: Path, spec: tuple, threads: int):
        from collections import deque

        from ..parallel import thread_pool

        self.folder, self.spec, self.threads = folder, spec, threads
        self.hasher = thread_pool(1, "lbp-hash")
        self.checker = thread_pool(1, "lbp-check")   # each source shard's sha256, while it is coded
        self.open = deque()   # (shard, lock, entry, temp, source check, future finish)
        self.result, self.problems = {}, []

    def run(self, shard: str, progress) -> None:
        lock = file_lock(self.folder / shard)
        lock.__enter__()
        try:
            job = _begin(self.folder, shard, self.spec, self.threads, progress, self.checker)
        except (FerdataError, OSError, RuntimeError) as exc:
            lock.__exit__(None, None, None)
            self.problems.append((shard, str(exc)))
            return self.settle()
        except BaseException:
            lock.__exit__(None, None, None)
            raise
        if job is None:
            lock.__exit__(None, None, None)
            self.result[shard] = False
            return self.settle()
        self.open.append((shard, lock, *job, self.hasher.submit(_sync_and_finish, self.folder, shard, *job)))
        self.settle(keep=1)

    def settle(self, keep: int = 0) -> None:
        """Close the open shards but the newest ``keep`` (waits for their finish). Stopped
        while waiting (Ctrl-C), the shard stays open: the caller settles or abandons it."""
        while len(self.open) > keep:
            job = self.open.popleft()
            try:
                job[-1].result()
                self.result[job[0]] = True
            except (FerdataError, OSError, RuntimeError) as exc:
                self.problems.append((job[0], str(exc)))
            except BaseException:
                self.open.appendleft(job)
                raise
            _close(job)

    def abandon(self) -> None:
        """A run stopped: each open shard's finish is cancelled, or waited for if it has
        begun (a shard is renamed and committed whole or not at all); the temps go and
        the locks are released."""
        from ..parallel import drain

        while self.open:
            job = self.open.popleft()
            drain(job[-1])
            _close(job)


def _close(job) -> None:
    """An open shard's end, finished or not: its temp removed, its lock released."""
    job[3].unlink(missing_ok=True)
    job[1].__exit__(None, None, None)


def add_lbp_to_shards(folder, variant: str = "circle", P: int = 8, R: float = 1.0, *,
                      workers: int = 1, progress=None, only=None) -> dict:
    """Add ``lbp/<variant>_P<P>_R<R>`` to every shard listed in ``folder/manifest.json``.

    Each shard is checked, changed atomically and recorded in the manifest (its entry's
    ``bytes``, ``sha256`` and ``lbp`` list) as it completes; see the module doc. The
    manifest's folder-level ``lbp`` list is what every listed shard has. Shards that
    already hold the dataset are skipped. Shards are done one after the other in this
    process, each on ``workers`` cores: JPEGs decoded straight to gray on ``workers``
    threads, the kernels on numba's threads (the caller sets ``numba.set_num_threads``;
    the CLI sets it to ``--workers``) — no worker processes to start, and the last shard
    keeps every core busy too. ``progress(n)``: ``n`` more images done (a shard skipped:
    all of its images); ``only`` limits the run to those shard names.

    Returns ``{shard file name: True if added, False if skipped}``. If any shard could
    not be done, the others are still done and then a :class:`ShardError` lists the
    bad ones (its ``result`` attribute holds the dict, ``problems`` the
    ``(shard, reason)`` pairs).
    """
    folder = Path(folder)
    listed = load_manifest(folder)["shards"]
    shards = sorted(listed)
    if only is not None:
        shards = [s for s in shards if s in set(only)]
    if int(workers) < 1:
        raise FerdataError(f"workers must be >= 1, got {workers}")
    remove_dead_temps(folder, "shard-*.h5.tmp-*")
    pipe = _Pipeline(folder, (variant, P, R), int(workers))
    try:
        for shard in shards:
            done = [0]

            def tick(n, done=done):
                done[0] += n
                if progress is not None:
                    progress(n)

            pipe.run(shard, tick)
            if progress is not None and int(listed[shard].get("n", 0)) > done[0]:
                progress(int(listed[shard].get("n", 0)) - done[0])   # skipped or failed: counted as done
    finally:  # the last shards are finished here; stopped mid-shard (Ctrl-C), lbp_copy removed that
        try:      # shard's temp and the one before it, coded and being hashed, is still finished
            pipe.settle()
        except BaseException:
            pipe.abandon()
            raise
        finally:
            remove_dead_temps(folder, "shard-*.h5.tmp-*")
    result, problems = pipe.result, pipe.problems
    if problems:
        done = sum(1 for v in result.values() if v)
        err = ShardError(f"{folder}: {len(problems)} shard(s) could not get {dataset_name(variant, P, R)} "
                         f"({done} added, {len(result) - done} already had it, all recorded): "
                         + "; ".join(why if why.startswith(str(folder)) else f"{s}: {why}" for s, why in problems))
        err.result, err.problems = result, problems
        raise err
    return result
