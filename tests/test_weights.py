"""Weight files are read without ever executing a pickle."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from minildm.pretrained.weights import read_weights


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_tensors_from_safetensors_and_lightning_ckpt(tmp_path):
    save_file({"a": torch.ones(2)}, str(tmp_path / "w.safetensors"))
    assert torch.equal(read_weights(tmp_path / "w.safetensors")["a"], torch.ones(2))
    torch.save({"state_dict": {"b": torch.zeros(3)}, "epoch": 3}, tmp_path / "w.ckpt")
    assert list(read_weights(tmp_path / "w.ckpt")) == ["b"]


def test_pickles_with_code_are_refused(tmp_path, capsys):
    with open(tmp_path / "evil.ckpt", "wb") as f:
        pickle.dump({"state_dict": Payload()}, f)
    with pytest.raises(ValueError, match="never unpickles"):
        read_weights(tmp_path / "evil.ckpt")
    assert "this must never run" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="accepted: .safetensors"):
        read_weights(tmp_path / "weights.txt")
