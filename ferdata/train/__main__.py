"""``python -m ferdata.train`` (and ``torchrun --nproc-per-node N -m ferdata.train``)."""
from ferdata.cli.train_cmd import train_command

train_command(prog_name="ferdata.train")
