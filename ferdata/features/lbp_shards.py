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
from ..atomic import file_lock, publish, remove_dead_temps
from .lbp import dataset_name


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
    raise ShardError(f"{path}: {'size' if size != e['bytes'] else 'sha256'} differs from the manifest "
                     "(corrupt or modified outside ferdata); left untouched, see `ferdata verify`")


def add_lbp_to_shard(folder, shard: str, variant: str = "circle", P: int = 8, R: float = 1.0) -> bool:
    """Add ``lbp/...`` to one listed shard and record it in the manifest; False if present."""

    from .lbp_h5 import lbp_copy

    folder = Path(folder)
    path = folder / shard
    name = dataset_name(variant, P, R)
    with file_lock(path):
        e = _trusted_entry(folder, shard)
        present = shard_lbp(path)
        if name in present:
            if sorted(e.get("lbp", [])) != present:
                set_entry_state(folder, shard, e["sha256"], lbp=present)
            return False
        tmp = lbp_copy(path, variant, P, R)
        try:
            new = {"bytes": tmp.stat().st_size, "sha256": file_sha256(tmp), "lbp": shard_lbp(tmp)}
            set_entry_state(folder, shard, e["sha256"], pending=new)
            publish(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        set_entry_state(folder, shard, e["sha256"], pending=None, **new)
    return True


def _shard_task(arg):
    """Pool task: ``(shard, added or None, problem or None)``; a bad shard is a result, not a crash."""
    folder, shard, variant, P, R, threads = arg
    if threads:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        return shard, add_lbp_to_shard(folder, shard, variant, P, R), None
    except (FerdataError, OSError, RuntimeError) as exc:
        return shard, None, str(exc)


def add_lbp_to_shards(folder, variant: str = "circle", P: int = 8, R: float = 1.0, *,
                      workers: int = 1, progress=None, only=None) -> dict:
    """Add ``lbp/<variant>_P<P>_R<R>`` to every shard listed in ``folder/manifest.json``.

    Each shard is checked, changed atomically and recorded in the manifest (its entry's
    ``bytes``, ``sha256`` and ``lbp`` list) as it completes; see the module doc. The
    manifest's folder-level ``lbp`` list is what every listed shard has. Shards that
    already hold the dataset are skipped. ``workers > 1`` runs shards in that many
    processes (spawned, one numba thread each, dying with this process); ``progress``
    is called with 1 per shard done; ``only`` limits the run to those shard names.

    Returns ``{shard file name: True if added, False if skipped}``. If any shard could
    not be done, the others are still done and then a :class:`ShardError` lists the
    bad ones (its ``result`` attribute holds the dict, ``problems`` the
    ``(shard, reason)`` pairs).
    """
    from ..parallel import run_tasks

    folder = Path(folder)
    shards = sorted(load_manifest(folder)["shards"])
    if only is not None:
        shards = [s for s in shards if s in set(only)]
    if int(workers) < 1:
        raise FerdataError(f"workers must be >= 1, got {workers}")
    remove_dead_temps(folder, "shard-*.h5.tmp-*")
    workers = max(1, min(int(workers), len(shards)))
    args = [(str(folder), s, variant, P, R, 1 if workers > 1 else 0) for s in shards]
    result, problems = {}, []
    try:
        for _, (shard, added, problem) in run_tasks(_shard_task, args, "process", workers):
            if problem is None:
                result[shard] = added
            else:
                problems.append((shard, problem))
            if progress is not None:
                progress(1)
    except FerdataError as exc:  # a worker died: what finished is recorded already
        problems.append(("(worker)", str(exc)))
    finally:  # temps of workers killed mid-shard (the pool is shut down: their pids are gone)
        remove_dead_temps(folder, "shard-*.h5.tmp-*")
    if problems:
        done = sum(1 for v in result.values() if v)
        err = ShardError(f"{folder}: {len(problems)} shard(s) could not get {dataset_name(variant, P, R)} "
                         f"({done} added, {len(result) - done} already had it, all recorded): "
                         + "; ".join(why if why.startswith(str(folder)) else f"{s}: {why}" for s, why in problems))
        err.result, err.problems = result, problems
        raise err
    return result
