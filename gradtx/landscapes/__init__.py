"""Synthetic problems with known difficulties, to judge optimizers before spending GPU hours.

* Classic test functions (:mod:`~gradtx.landscapes.functions`): ``sphere``,
  ``ill_conditioned_quadratic``, ``rosenbrock``, ``beale``, ``booth``, ``himmelblau``,
  ``matyas``, ``mccormick``, ``styblinski_tang``, ``three_hump_camel``,
  ``goldstein_price``, ``rastrigin``, ``ackley``, ``saddle``; each a :class:`Landscape`
  with its domain, start point and known minima.
* The unit tests of Schaul, Antonoglou & Silver 2014, "Unit Tests for Stochastic
  Optimization" (ICLR 2014): 1-D shape :func:`prototype` chains, noise, scales,
  non-stationarity and their multi-dimensional combinations (:func:`suite`, :class:`Case`),
  scored against tuned SGD by :func:`run_suite`.
* Pictures (matplotlib, optional): :func:`plot_trajectories`, :func:`plot_suite`.
  ``python -m gradtx.landscapes`` runs a default set of optimizers and writes both.

>>> import gradtx as gtx
>>> result = gtx.landscapes.run_suite({"adam": gtx.adam}, filter="quad_bowl noiseless")
>>> print(result)  # doctest: +SKIP
"""

from gradtx.landscapes.functions import (FUNCTIONS, Landscape, ackley, beale, booth,
                                         goldstein_price, himmelblau,
                                         ill_conditioned_quadratic, matyas, mccormick,
                                         rastrigin, rosenbrock, saddle, sphere,
                                         styblinski_tang, three_hump_camel)
from gradtx.landscapes.plot import plot_suite, plot_trajectories, trajectory
from gradtx.landscapes.prototypes import SHAPES, Prototype, prototype
from gradtx.landscapes.schaul import NOISES, NONSTATIONARITY, SCALES, Case, select, suite
from gradtx.landscapes.scoring import (CATEGORIES, LEARNING_RATES, SGD_LEARNING_RATES,
                                     SuiteResult, categorise, run_suite)

__all__ = [
    "FUNCTIONS", "Landscape", "ackley", "beale", "booth", "goldstein_price", "himmelblau",
    "ill_conditioned_quadratic", "matyas", "mccormick", "rastrigin", "rosenbrock", "saddle",
    "sphere", "styblinski_tang", "three_hump_camel", "plot_suite", "plot_trajectories",
    "trajectory", "SHAPES", "Prototype", "prototype", "NOISES", "NONSTATIONARITY", "SCALES",
    "Case", "select", "suite", "CATEGORIES", "LEARNING_RATES", "SGD_LEARNING_RATES",
    "SuiteResult", "categorise", "run_suite",
]
