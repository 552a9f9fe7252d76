"""``python -m ferdata …`` (and ``torchrun --nproc-per-node N -m ferdata train …``): the ``ferdata`` command."""
from ferdata.cli import main

if __name__ == "__main__":
    main(prog_name="ferdata")
