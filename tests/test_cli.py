"""The command line's front door: bad input gives one line naming it and what is accepted, exit status 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minildm.cli import main
from minildm.pretrained import CHECKPOINTS

ROOT = Path(__file__).resolve().parents[1]
TOY_CONFIG = ROOT / "minildm" / "configs" / "examples" / "toy-regressor.yaml"

BAD_INPUT = {  # argv -> words the one line must contain: the bad value and (some of) the accepted ones
    "model name": (["sample", "nosuch-ldm"], ["nosuch-ldm", "shapes-ldm", "run folder"]),
    "sampler": (["sample", "shapes-ldm", "--sampler", "foo"], ["'foo'", "dpmpp_2m", "ddim"]),
    "convert source": (["convert", "missing.ckpt", "out"], ["missing.ckpt", ".safetensors", "diffusers"]),
    "dataset name": (["data", "show", "nosuch"], ["'nosuch'", "shapes", "digits"]),
    "config key": (["train", str(TOY_CONFIG), "train.stepz=3"], ["train.stepz", "valid train keys", "steps"]),
    "config name": (["train", "nosuch/config"], ["nosuch/config", "autoencoder/shapes-kl-f4"]),
    "grade path": (["grade", "no/such/notebook.ipynb", "--solutions", str(ROOT / "solutions")],
                   ["no/such/notebook.ipynb", "notebooks or folders"]),
    "labels": (["sample", "shapes-ldm", "--labels", "99"], ["[99]", "0..17"]),
    "no labels": (["sample", "shapes-ldm", "--n", "2"], ["conditioned on label", "--labels", "--val N"]),
    "no prompt": (["sample", "shapes-txt2img"], ["conditioned on caption", "--prompt", "--val N"]),
    "no layout": (["sample", "shapes-layout"], ["conditioned on boxes, box_labels", "--val N"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_naming_it_and_exit_2(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is written into the repository
    argv, words = BAD_INPUT[case]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], f"{word!r} missing from {lines[0]!r}"


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="nosuch-ldm"):
        main(["--debug", "sample", "nosuch-ldm"])
    with pytest.raises(ValueError, match="'foo'"):
        main(["sample", "shapes-ldm", "--sampler", "foo", "--debug"])  # the flag works anywhere


def test_the_console_script_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "minildm", "sample", "nosuch-ldm"], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("minildm sample: ") and "Traceback" not in result.stderr


def test_a_copied_course_checkpoint_folder_samples_by_path(tmp_path, capsys):
    folder = shutil.copytree(CHECKPOINTS / "shapes-ldm", tmp_path / "my copy of shapes-ldm")
    out = tmp_path / "grid.png"
    argv = ["sample", str(folder), "--labels", "0,5", "--steps", "2", "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    assert out.is_file() and "wrote 2 samples" in capsys.readouterr().out


def test_a_folder_that_is_no_checkpoint_is_named_with_what_is_accepted(tmp_path, capsys):
    assert main(["sample", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip()
    assert str(tmp_path) in line and "state.json" in line and "manifest.json" in line


def test_sample_inpaints_image_files_and_takes_conditions_from_the_data(tmp_path, capsys):
    """--image/--mask feed a concat model (known pixels come back unchanged); --val N works for any model."""
    import numpy as np
    from PIL import Image

    from minildm.train import train_from_config

    unet = dict(in_channels=7, out_channels=3, model_channels=16, channel_mult=[1, 2], num_res_blocks=1,
                attention_resolutions=[], norm_num_groups=8)
    config = {"model": {"target": "latent_diffusion", "params": {"unet": unet, "image_size": 8, "first_stage": None,
                                                                 "conditioner": {"type": "inpaint"}}},
              "data": {"name": "shapes", "size": 8, "cache_latents": 16},
              "train": {"steps": 1, "batch_size": 4, "log_every": 1, "checkpoint_every": 1}}
    train_from_config(config, out_dir=tmp_path / "run", progress=False)
    picture = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    hole = np.zeros((12, 16), dtype=np.uint8)
    hole[4:8, 4:12] = 255
    Image.fromarray(picture).save(tmp_path / "image.png")
    Image.fromarray(hole).save(tmp_path / "mask.png")
    run = str(tmp_path / "run")
    out = tmp_path / "out.png"
    assert main(["sample", run, "--image", str(tmp_path / "image.png"), "--mask", str(tmp_path / "mask.png"),
                 "--steps", "1", "--out", str(out)]) == 0
    result = np.asarray(Image.open(out))
    assert result.shape == (12, 16, 3)  # the output size follows the input image
    known = hole == 0
    assert (result[known] == picture[known]).all() and not (result[~known] == picture[~known]).all()
    assert main(["sample", run, "--steps", "1"]) == 2
    assert "give it as files (--image, --mask) or take it from the data with --val N" in capsys.readouterr().err
    assert main(["sample", run, "--low-res", str(tmp_path / "image.png")]) == 2
    assert "this model reads image, mask" in capsys.readouterr().err
    assert main(["sample", run, "--val", "3", "--steps", "1", "--out", str(tmp_path / "val.png")]) == 0
    assert "wrote 6 samples" in capsys.readouterr().out  # 3 samples above their 3 real images
