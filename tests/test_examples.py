"""The examples run and do what they say."""

from conftest import load_script


def test_train_mlp_learns_digits(capsys):
  accuracy = load_script("examples/train_mlp.py").main(["--epochs", "10"])
  out = capsys.readouterr().out
  losses = [float(line.split("train loss")[1]) for line in out.splitlines()
            if "train loss" in line]
  assert losses[-1] < losses[0] / 5, out
  assert accuracy > 0.9, out


def test_packed_flax_trains_the_same_model_with_a_few_arrays(capsys):
  result = load_script("examples/packed_flax.py").main(
      ["--steps", "20", "--depth", "2", "--width", "16"])
  out = capsys.readouterr().out
  assert result["packed_arrays"] < 10 < result["plain_arrays"], out
  assert result["difference"] < 1e-3, out  # float32 rounding over 20 steps
  assert abs(result["packed_loss"] - result["plain_loss"]) < 1e-3, out
  assert "arrays cross the step" in out and "ms per step" in out
