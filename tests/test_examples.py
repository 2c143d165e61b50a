"""The examples run and do what they say."""

import importlib.util
import pathlib

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
  spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_train_mlp_learns_digits(capsys):
  accuracy = load_example("train_mlp").main(["--epochs", "10"])
  out = capsys.readouterr().out
  losses = [float(line.split("train loss")[1]) for line in out.splitlines()
            if "train loss" in line]
  assert losses[-1] < losses[0] / 5, out
  assert accuracy > 0.9, out
