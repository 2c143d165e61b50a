"""The examples run and do what they say."""

from conftest import load_script


def test_train_mlp_learns_digits(capsys):
  accuracy = load_script("examples/train_mlp.py").main(["--epochs", "10"])
  out = capsys.readouterr().out
  losses = [float(line.split("train loss")[1]) for line in out.splitlines()
            if "train loss" in line]
  assert losses[-1] < losses[0] / 5, out
  assert accuracy > 0.9, out
