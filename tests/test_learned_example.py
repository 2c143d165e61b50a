"""examples/learned_optimizer.py runs end to end with tiny settings and reports what it says.

The full-size result (the shipped quadratic optimizer beats the tuned baselines on 100
held-out problems) is checked by tests/test_learned.py on a smaller sample, and printed by
the example at its default settings.
"""

from conftest import load_script



def test_learned_optimizer_example_with_tiny_settings(tmp_path, capsys):
  plot = tmp_path / "curves.png"
  table = load_script("examples/learned_optimizer.py").main(["--tiny", "--plot", str(plot)])
  out = capsys.readouterr().out
  for name in ["LSTM (quadratic)", "LSTM (mlp)", "Adam", "RMSProp", "SGD+momentum",
               "Nesterov"]:
    assert name in table and name in out, out
  for name in ["Adam", "RMSProp", "SGD+momentum", "Nesterov"]:
    assert 1e-4 <= table[name]["lr"] <= 1.0
  assert "loss@10" in out and "loss@20" in out and "Cross-family" in out, out
  assert "LSTM (quadratic) on mlp" in table and "Adam on mlp" in table
  assert plot.stat().st_size > 10_000
  # Even 10 steps of the shipped optimizer make progress on held-out quadratics.
  assert table["LSTM (quadratic)"]["short"] < 5.0, out
