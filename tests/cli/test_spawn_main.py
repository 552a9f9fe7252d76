"""Spawned workers of the ``ferdata`` console script do not re-run it (ferdata.cli._spawn_main):
they used to import the whole command line (~0.3 s each) before their first task."""
import subprocess
import sys

SCRIPT = '''
import sys
from ferdata.cli import _spawn_main   # the console script imports ferdata.cli the same way

if __name__ == "__main__":
    _spawn_main()
    from ferdata.parallel import process_pool
    with process_pool(1) as ex:
        print(ex.submit(eval, "'ferdata.cli' in __import__('sys').modules").result())
'''


def _child_imports_cli(path) -> bool:
    path.write_text(SCRIPT)
    r = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip() == "True"


def test_the_console_scripts_workers_skip_the_command_line(tmp_path):
    assert not _child_imports_cli(tmp_path / "ferdata")


def test_any_other_main_script_is_left_alone(tmp_path):
    assert _child_imports_cli(tmp_path / "my_script.py")
