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
