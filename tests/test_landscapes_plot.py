"""Pictures: trajectories on 2-D landscapes, the suite summary grid, the command line."""

import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import gradtx as gtx  # noqa: E402
from gradtx import landscapes  # noqa: E402
from gradtx.landscapes import __main__ as command  # noqa: E402


def test_trajectory_follows_the_optimizer():
  # SGD on the sphere with lr 0.25 halves the point every step.
  path = landscapes.trajectory(landscapes.sphere, gtx.sgd(0.25), steps=3)
  np.testing.assert_allclose(path, [[1.5, 1.5], [0.75, 0.75], [0.375, 0.375],
                                    [0.1875, 0.1875]], rtol=1e-6)


def test_plot_trajectories_writes_a_png(tmp_path):
  path = tmp_path / "rosenbrock.png"
  fig = landscapes.plot_trajectories(landscapes.rosenbrock, {"adam": gtx.adam(0.05),
                                                             "sgd": gtx.sgd(1e-3)},
                                     steps=20, path=path, resolution=40)
  assert path.exists() and path.stat().st_size > 1000
  assert len(fig.axes[0].lines) >= 3
  landscapes.plot_trajectories(landscapes.saddle, {"sgd": gtx.sgd(0.1)}, steps=10,
                               path=tmp_path / "saddle.png", resolution=30)
  assert (tmp_path / "saddle.png").stat().st_size > 1000
  with pytest.raises(ValueError, match="2-D"):
    landscapes.plot_trajectories(landscapes.rosenbrock(n=3), {"sgd": gtx.sgd(0.1)})


def test_plot_suite_writes_a_png(tmp_path):
  result = landscapes.run_suite({"adam": gtx.adam(0.1), "sgd": gtx.sgd(0.01)},
                                filter="quad_bowl noiseless", seeds=2, steps=20)
  path = tmp_path / "suite.png"
  landscapes.plot_suite(result, path=path)
  assert path.exists() and path.stat().st_size > 1000


def test_missing_matplotlib_gives_a_clear_error(monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
  with pytest.raises(ImportError, match=r"pip install.*gradtx\[examples\]"):
    landscapes.plot_trajectories(landscapes.booth, {"sgd": gtx.sgd(0.1)}, steps=2)


def test_importing_gradtx_does_not_import_matplotlib():
  code = "import sys, gradtx, gradtx.landscapes; assert 'matplotlib' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True)


def test_command_line_prints_the_table_and_writes_pictures(tmp_path, capsys):
  command.main(["--filter", "quad_bowl noiseless normal", "--seeds", "2", "--steps", "20",
                "--optimizers", "sgd,adam", "--functions", "booth", "--out", str(tmp_path)])
  out, err = capsys.readouterr()
  assert "adam" in out and "diverged" in out
  assert "3/3" in err and "#" in err
  assert (tmp_path / "landscapes_suite.png").stat().st_size > 1000
  assert (tmp_path / "landscapes_booth.png").stat().st_size > 1000
  with pytest.raises(SystemExit):
    command.main(["--optimizers", "nope", "--out", str(tmp_path)])


def test_command_line_checks_matplotlib_before_running_the_suite(monkeypatch, tmp_path,
                                                                 capsys):
  monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
  args = ["--filter", "quad_bowl noiseless normal", "--seeds", "2", "--steps", "5",
          "--optimizers", "sgd", "--out", str(tmp_path)]
  with pytest.raises(SystemExit):
    command.main(args)
  _, err = capsys.readouterr()
  assert 'pip install "gradtx[examples]"' in err and "--no-plots" in err
  assert "SGD reference" not in err  # the suite did not start
  command.main(args + ["--no-plots"])  # the table alone needs no matplotlib
  out, _ = capsys.readouterr()
  assert "sgd" in out and not list(tmp_path.iterdir())
