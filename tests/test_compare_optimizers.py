"""examples/compare_optimizers.py (the README's first command) runs and reports honestly.

Tiny settings keep it fast: every optimizer for one epoch of large batches. The numbers
written to results.json are checked against the table and against the run itself. The
default run trains packed params (``gtx.pack``); ``--no-packed`` trains the plain tree,
and the shape-aware optimizers (factored moments, trust ratios, orthogonalised momentum)
give the same losses both ways (float32 rounding: 1e-5 relative).
"""

import json
import sys

import numpy as np
import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def compare():
  return load_script("examples/compare_optimizers.py")


def test_every_optimizer_trains_and_the_outputs_are_written(compare, tmp_path, capsys):
  assert len(compare.OPTIMIZERS) >= 8
  report = compare.main(["--epochs", "2", "--batch-size", "256", "--out", str(tmp_path)])
  out, err = capsys.readouterr()

  names = list(compare.OPTIMIZERS)
  assert report["settings"]["packed"] is True  # the default
  assert "params packed" in out
  assert [r["name"] for r in report["results"]] == names
  assert report["settings"]["steps_per_epoch"] == 1437 // 256
  for r in report["results"]:
    assert r["finite"], r["name"]
    assert len(r["step_losses"]) == 2 * (1437 // 256)
    # Ten steps from a random init: every optimizer has begun to learn, except the
    # rectified ones (RAdam, Ranger), whose first steps (rho_t <= 5) are un-adapted
    # momentum SGD with lr 3e-3.
    if r["name"] not in ("radam", "ranger"):
      assert r["final_train_loss"] < r["step_losses"][0], r["name"]
    assert r["final_train_loss"] == pytest.approx(np.mean(r["step_losses"][-5:]))
    assert 0.0 <= r["test_accuracy"] <= 1.0 and r["median_step_ms"] > 0
    assert r["state_bytes"] > 0
    # The table row shows the same numbers.
    row = next(line for line in out.splitlines() if line.startswith(r["name"] + " "))
    assert f"{r['final_train_loss']:.4f}" in row and f"{r['test_accuracy']:.4f}" in row
  by_name = {r["name"]: r for r in report["results"]}
  # Adam keeps two moments (plus a count), SGD with momentum one trace: state sizes differ.
  assert by_name["adam"]["state_bytes"] > by_name["sgd_nesterov_step"]["state_bytes"]
  assert "|" in err and "2/2 epochs" in err  # the progress bars

  saved = json.loads((tmp_path / "results.json").read_text())
  assert [r["name"] for r in saved["results"]] == names
  assert saved["results"][0]["step_losses"] == report["results"][0]["step_losses"]
  png = (tmp_path / "loss_curves.png").read_bytes()
  assert png.startswith(b"\x89PNG")


def test_more_epochs_learn_the_digits(compare, tmp_path, capsys):
  report = compare.main(["--optimizers", "adam", "--epochs", "8", "--out", str(tmp_path),
                         "--no-packed"])
  assert "params as a tree" in capsys.readouterr().out
  assert report["settings"]["packed"] is False
  (adam,) = report["results"]
  assert adam["epoch_losses"][-1] < adam["epoch_losses"][0] / 5
  assert adam["test_accuracy"] > 0.9


def test_unknown_optimizer_is_refused_with_the_choices(compare, capsys):
  with pytest.raises(SystemExit):
    compare.main(["--optimizers", "adam,nosuchopt"])
  err = capsys.readouterr().err
  assert "unknown optimizers ['nosuchopt']" in err and "ranger" in err


def test_missing_matplotlib_names_the_extra(compare, tmp_path, capsys, monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  assert not compare.plot([], 1, tmp_path / "loss_curves.png")
  assert 'pip install "gradtx[examples]"' in capsys.readouterr().err
  assert not (tmp_path / "loss_curves.png").exists()


def test_swats_switches_within_the_run_and_the_table_says_when(compare, tmp_path, capsys):
  report = compare.main(["--optimizers", "swats,adam", "--epochs", "1", "--out",
                         str(tmp_path)])
  out = capsys.readouterr().out
  swats, adam = report["results"]
  assert 1 < swats["switch_step"] <= len(swats["step_losses"])
  assert adam["switch_step"] is None
  row = next(line for line in out.splitlines() if line.startswith("swats "))
  assert row.endswith(f"step {swats['switch_step']}")
  # After the switch the steps are SGD's, not Adam's: the runs part ways.
  assert swats["step_losses"][-1] != adam["step_losses"][-1]


def test_packed_and_plain_runs_of_the_shape_aware_optimizers_agree(compare, tmp_path,
                                                                   capsys):
  settings = ["--optimizers", "adafactor,lamb,muon", "--epochs", "1",
              "--batch-size", "256", "--out", str(tmp_path)]
  packed = compare.main(settings + ["--packed"])
  plain = compare.main(settings + ["--no-packed"])
  capsys.readouterr()
  for a, b in zip(packed["results"], plain["results"], strict=True):
    assert a["name"] == b["name"]
    np.testing.assert_allclose(a["step_losses"], b["step_losses"], rtol=1e-5,
                               err_msg=a["name"])
    assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1 / 360)


def test_the_packed_benchmark_of_the_main_job_runs(tmp_path, capsys):
  """benchmarks/main_job_packed.py (whose figures benchmarks/README.md quotes), smoke-run:
  both modes timed for every round's steps, the ratio the table prints."""
  bench = load_script("benchmarks/main_job_packed.py")
  report = bench.main(["--optimizers", "adam", "--rounds", "2", "--steps", "2", "--json",
                       str(tmp_path / "bench.json")])
  out = capsys.readouterr().out
  (row,) = report["rows"]
  assert row["name"] == "adam" and row["plain_ms"] > 0 and row["packed_ms"] > 0
  assert row["ratio"] == pytest.approx(row["packed_ms"] / row["plain_ms"])
  assert f"{row['ratio']:.2f}" in next(line for line in out.splitlines()
                                          if line.startswith("adam "))
  assert json.loads((tmp_path / "bench.json").read_text())["rows"][0]["name"] == "adam"
