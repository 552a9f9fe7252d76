"""Messages that name the real cause and where it came from."""
from click.testing import CliRunner

from ferdata.cli import main


def test_a_bad_set_value_is_blamed_on_set_not_on_the_recipe(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('model = "preactresnet18"\nepochs = 2\n')
    r = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "--set", "epochs=abc", "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and r.output.startswith("Error: --set: epochs must be an integer"), r.output
    recipe.write_text('model = "preactresnet18"\nepochs = "abc"\n')
    r = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and f"Error: {recipe}: epochs must be an integer" in r.output, r.output
    r = CliRunner().invoke(main, ["train", "--set", "optimisation.batch_size=0", "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "batch_size must be >= 1, got 0" in r.output


def test_render_on_a_device_this_machine_lacks(sample_dir, tmp_path):
    import torch

    if torch.cuda.is_available():  # pragma: no cover - CI has no GPU
        return
    r = CliRunner().invoke(main, ["render", str(sample_dir / "faces.h5"), "--backgrounds",
                                  str(sample_dir / "backgrounds"), "-o", str(tmp_path / "o"), "--device", "cuda"])
    assert r.exit_code == 1 and r.output.strip() == "Error: device 'cuda': CUDA is not available here (use cpu)"


def test_live_epoch_smaller_than_a_batch_names_both_keys(tmp_path):
    r = CliRunner().invoke(main, ["train", "--set", "train_on=live", "--set", "live_epoch_size=8",
                                  "--set", "batch_size=16", "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "live_epoch_size (8) is smaller than batch_size (16)" in r.output, r.output


def test_an_unknown_key_names_its_source_and_the_nearest_key(tmp_path):
    r = CliRunner().invoke(main, ["train", "--set", "epoch=3", "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and r.output.strip() == ("Error: --set: unknown key(s) epoch for TrainConfig "
                                                    "(epoch: did you mean epochs?)")
    recipe = tmp_path / "r.toml"
    recipe.write_text("batchsize = 8\n")
    r = CliRunner().invoke(main, ["train", "--recipe", str(recipe), "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and f"{recipe}: unknown key(s) batchsize" in r.output and "batch_size?" in r.output


def test_the_demo_recipe_of_a_checkout_is_found():
    """`ferdata train` with no recipe uses recipes/sample_demo.toml (the CLI moved into the package)."""
    from pathlib import Path

    from ferdata.cli.train_cmd import DEMO_RECIPE

    if (Path(__file__).resolve().parents[2] / "recipes").is_dir():
        assert DEMO_RECIPE.is_file()


def test_a_users_model_from_the_cli(tmp_path, monkeypatch):
    """`ferdata train --import mymodels --set model=mynet` trains a model defined outside ferdata."""
    import json

    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "from torch import nn\n"
        "from ferdata.train.models import register_model\n"
        "from ferdata.train.models.blocks import FERModel\n\n"
        "@register_model('mynet')\n"
        "class MyNet(FERModel):\n"
        "    default_input_size = (32, 32)\n"
        "    def __init__(self, num_classes=8, input_size=None, in_channels=None):\n"
        "        super().__init__(num_classes, input_size, in_channels)\n"
        "        self.fc = nn.Linear(self.in_channels * 32 * 32, num_classes)\n"
        "    def forward(self, image):\n"
        "        return {'logits': self.fc(image.flatten(1))}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    args = ["train", "--import", "mymodels", "--set", "model=mynet", "--set", "epochs=1", "--set", "sample_per_face=16",
            "--set", "sample_size=32", "--set", "batch_size=8", "--set", "num_workers=0", "-o", str(out)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["model"] == "mynet"
    r = CliRunner().invoke(main, ["train", "--import", "no_such_module_xyz", "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and r.output.startswith("Error: --import no_such_module_xyz: cannot import it")
