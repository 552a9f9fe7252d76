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


def add_lbp_to_shard(folder, shard: str, variant: str = "circle", P: int = 8, R: float = 1.0, *,
                     threads: int = 1, progress=None) -> bool:
    """Add ``lbp/...`` to one listed shard and record it in the manifest; False if present.

    ``threads``: JPEG decode threads (the kernels use numba's thread count);
    ``progress(n)``: ``n`` more images of this shard done."""

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
        tmp = lbp_copy(path, variant, P, R, threads=threads, progress=progress)
        try:
            new = {"bytes": tmp.stat().st_size, "sha256": file_sha256(tmp), "lbp": shard_lbp(tmp)}
            set_entry_state(folder, shard, e["sha256"], pending=new)
            publish(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        set_entry_state(folder, shard, e["sha256"], pending=None, **new)
    return True


def _one_shard(folder: Path, shard: str, spec: tuple, threads: int, progress):
    """``(added or None, problem or None)``: a bad shard is a result, not a crash."""
    try:
        return add_lbp_to_shard(folder, shard, *spec, threads=threads, progress=progress), None
    except (FerdataError, OSError, RuntimeError) as exc:
        return None, str(exc)


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
    result, problems = {}, []
    try:
        for shard in shards:
            done = [0]

            def tick(n, done=done):
                done[0] += n
                if progress is not None:
                    progress(n)

            added, problem = _one_shard(folder, shard, (variant, P, R), int(workers), tick)
            if problem is None:
                result[shard] = added
            else:
                problems.append((shard, problem))
            if progress is not None and int(listed[shard].get("n", 0)) > done[0]:
                progress(int(listed[shard].get("n", 0)) - done[0])   # skipped or failed: counted as done
    finally:  # temps of a run stopped mid-shard (Ctrl-C): removed by lbp_copy; dead ones here
        remove_dead_temps(folder, "shard-*.h5.tmp-*")
    if problems:
        done = sum(1 for v in result.values() if v)
        err = ShardError(f"{folder}: {len(problems)} shard(s) could not get {dataset_name(variant, P, R)} "
                         f"({done} added, {len(result) - done} already had it, all recorded): "
                         + "; ".join(why if why.startswith(str(folder)) else f"{s}: {why}" for s, why in problems))
        err.result, err.problems = result, problems
        raise err
    return result
