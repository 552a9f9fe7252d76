"""``python -m ferdata …`` (and ``torchrun --nproc-per-node N -m ferdata train …``): the ``ferdata`` command."""
from ferdata.cli import run

if __name__ == "__main__":
    run()
