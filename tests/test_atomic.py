"""ferdata.atomic: the one write primitive; locks that work with and without fcntl."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ferdata import atomic

HOLD = textwrap.dedent("""
    import sys, time
    {prelude}
    from ferdata.atomic import file_lock
    import filelock
    print(type(filelock.FileLock(sys.argv[1] + ".probe")).__name__, flush=True)
    with file_lock(sys.argv[1]):
        with open(sys.argv[2], "a") as f:
            f.write("in %s\\n" % sys.argv[3]); f.flush()
        time.sleep(float(sys.argv[4]))
        with open(sys.argv[2], "a") as f:
            f.write("out %s\\n" % sys.argv[3]); f.flush()
""")


def _two_holders(tmp_path: Path, prelude: str):
    code = HOLD.format(prelude=prelude)
    target, log = tmp_path / "thing.json", tmp_path / "log.txt"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(target), str(log), name, "0.6"],
                              stdout=subprocess.PIPE, text=True) for name in ("a", "b")]
    kinds = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    return kinds, log.read_text().split("\n")[:-1]


@pytest.mark.parametrize("prelude, kind", [
    ("", "UnixFileLock"),
    # a platform without fcntl: the lock is a file created exclusively (filelock's soft lock)
    ("sys.modules['fcntl'] = None", "SoftFileLock"),
])
def test_file_lock_excludes_other_processes(tmp_path, prelude, kind):
    if sys.platform == "win32":  # pragma: no cover
        pytest.skip("POSIX lock kinds")
    kinds, lines = _two_holders(tmp_path, prelude)
    assert kinds == {kind}
    # never both inside: every "in x" is followed by "out x"
    assert len(lines) == 4 and lines[0].split()[1] == lines[1].split()[1] and lines[2].split()[1] == lines[3].split()[1]
    assert [w.split()[0] for w in lines] == ["in", "out", "in", "out"]


def test_atomic_save_keeps_the_extension_and_leaves_no_temp(tmp_path):
    seen = []

    def save(tmp):
        seen.append(Path(tmp).name)
        Path(tmp).write_bytes(b"png")

    out = atomic.atomic_save(tmp_path / "fig.png", save)
    assert out.read_bytes() == b"png" and seen[0].endswith(".tmp.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]

    def fail(tmp):
        Path(tmp).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic.atomic_save(tmp_path / "fig.png", fail)
    assert out.read_bytes() == b"png" and sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]


def test_append_line_and_publish(tmp_path):
    log = tmp_path / "m.jsonl"
    atomic.append_line(log, '{"epoch": 0}')
    atomic.append_line(log, '{"epoch": 1}')
    assert log.read_text() == '{"epoch": 0}\n{"epoch": 1}\n'
    tmp = atomic.tmp_path(tmp_path / "x.bin")
    tmp.write_bytes(b"new")
    atomic.publish(tmp, tmp_path / "x.bin")
    assert (tmp_path / "x.bin").read_bytes() == b"new" and not tmp.exists()


def test_no_module_but_atomic_renames_fsyncs_or_locks():
    """Every writer goes through ferdata.atomic (docs/architecture.md)."""
    import re

    import ferdata

    root = Path(ferdata.__file__).parent
    pattern = re.compile(r"os\.replace\(|os\.rename\(|\.rename\(|\.replace\(tmp|os\.fsync\(|fcntl\.|FileLock\(")
    found = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py") if p.name != "atomic.py"
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
