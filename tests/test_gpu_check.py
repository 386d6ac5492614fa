"""benchmarks/gpu_check.sh's pieces that run anywhere: its summary table, and its shell syntax."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_summary  # noqa: E402


def test_summary_reads_every_part_and_flags_failures(tmp_path):
    (tmp_path / "gpu.txt").write_text("NVIDIA H200, 143771 MiB\n")
    (tmp_path / "unit.xml").write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_b" name="test_skip"><skipped/></testcase>'
        '<testcase classname="tests.test_b" name="test_ok2"/></testsuite></testsuites>')
    (tmp_path / "unit_ms.txt").write_text("61500\n")
    demo = tmp_path / "demo"
    for stage, steps, batch in (("ldm", 2000, 256), ("autoencoder", 1000, 64)):
        (demo / stage).mkdir(parents=True)
        (demo / stage / "config.yaml").write_text(yaml.safe_dump({"train": {"steps": steps, "batch_size": batch}}))
    (demo / "results.json").write_text(json.dumps({
        "judge_accuracy_on_samples": 0.875, "autoencoder_val_psnr_db": 33.1,
        "seconds": {"autoencoder": 8.0, "ldm": 16.0, "sampling": 1.5, "total": 28.0}}))
    (tmp_path / "demo_ms.txt").write_text("40000")
    (tmp_path / "unet_sd.json").write_text(json.dumps({
        "precision": "bf16", "config": {"batch": 8}, "max_abs_diff": 0.0, "train_flop_per_image": 2.41e12,
        "train_tflop_per_s": {"minildm": 150.0, "diffusers": 160.0},
        "steps": {"train": {"minildm_ms": 128.0, "diffusers_ms": 120.0, "ratio": 128 / 120},
                  "sample": {"minildm_ms": 40.0, "diffusers_ms": 45.0, "ratio": 40 / 45}}}))
    table, data = gpu_summary.summarize(tmp_path)
    assert data["unit"]["passed"] == 2 and data["unit"]["failed_tests"] == ["tests.test_a::test_bad"]
    assert "2 passed, 1 failed, 1 skipped in 62 s" in table and "tests.test_a::test_bad" in table
    assert data["demo"]["ldm_images_per_s"] == 2000 * 256 / 16.0  # 32,000 latents/s
    assert "32,000" in table and "87.5%" in table and "| 40 s" in table.replace("`minildm demo` end to end | ", "| ")
    assert "minildm 128.0 ms, diffusers 120.0 ms" in table and "1.067" in table


def test_summary_of_an_empty_folder_says_not_run(tmp_path):
    table, data = gpu_summary.summarize(tmp_path)
    assert table.count("not run") == 3 and data["unit"] is None


def test_gpu_scripts_are_valid_shell():
    for script in ("gpu_check.sh", "gpu_wheels.sh"):
        result = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
