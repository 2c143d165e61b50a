"""A NumPy transcription of Mahsereci & Hennig's probabilistic line search, the oracle of
tests/test_probabilistic_linesearch.py.

Written from the authors' MATLAB code (``probLineSearch.m``, release 4.0) as it reads,
not from gradtx: the GP as explicit Python loops over the observations and
``numpy.linalg.solve`` on the Gram matrix, the Wolfe probability by SciPy quadrature of
the bivariate normal density (not Genz's method), and the search as the MATLAB function's
loop, which calls the objective and returns a point. Where gradtx departs from that code
by design, the oracle follows gradtx, each marked "(gradtx)":

* the search is driven one evaluation per call: a point taken that is not the last
  evaluated is evaluated again when the next line starts there (MATLAB reuses its
  stored observation);
* the first line's ``alpha0`` is ``initial_step_size / ||d||``;
* the extrapolation distance doubles when the extrapolation candidate is chosen (MATLAB
  compares the chosen ``t`` with ``tt + EXT``, equal to it when the last trial is the
  largest).
"""

import math

import numpy as np
import scipy.integrate
import scipy.special
import scipy.stats

OFFSET = 10.0


# --- the GP -------------------------------------------------------------------------------


def k(a, b):
  m = min(a, b) + OFFSET
  return m**3 / 3 + 0.5 * abs(a - b) * m**2


def kd(a, b):
  return (a + OFFSET)**2 / 2 if a < b else (a + OFFSET) * (b + OFFSET) - (b + OFFSET)**2 / 2


def dk(a, b):
  return (b + OFFSET)**2 / 2 if a > b else (a + OFFSET) * (b + OFFSET) - (a + OFFSET)**2 / 2


def dkd(a, b):
  return min(a, b) + OFFSET


def ddk(a, b):
  return b - a if a <= b else 0.0


def ddkd(a, b):
  return 1.0 if a <= b else 0.0


def dddk(a, b):
  return -1.0 if a <= b else 0.0


class GP:
  """Values ``Y`` and slopes ``dY`` observed at ``T`` with noise ``sigmaf**2``,
  ``sigmadf**2`` (``updateGP`` of the MATLAB code)."""

  def __init__(self, T, Y, dY, sigmaf2, sigmadf2):
    self.T = list(T)
    n = len(T)
    G = np.zeros([2 * n, 2 * n])
    for i in range(n):
      for j in range(n):
        G[i, j] = k(T[i], T[j])
        G[i, n + j] = kd(T[i], T[j])
        G[n + i, j] = kd(T[j], T[i])
        G[n + i, n + j] = dkd(T[i], T[j])
    G += np.diag([sigmaf2] * n + [sigmadf2] * n)
    self.G = G
    self.A = np.linalg.solve(G, np.concatenate([Y, dY]))

  def _vec(self, t, slope):
    if slope:
      return np.array([dk(t, s) for s in self.T] + [dkd(t, s) for s in self.T])
    return np.array([k(t, s) for s in self.T] + [kd(t, s) for s in self.T])

  def m(self, t):
    return self._vec(t, False) @ self.A

  def d1m(self, t):
    return self._vec(t, True) @ self.A

  def d2m(self, t):
    return np.array([ddk(t, s) for s in self.T] + [ddkd(t, s) for s in self.T]) @ self.A

  def d3m(self, t):
    return np.array([dddk(t, s) for s in self.T] + [0.0] * len(self.T)) @ self.A

  def cov(self, a, b, slope_a=False, slope_b=False):
    prior = {(False, False): k, (False, True): kd, (True, False): dk, (True, True): dkd}
    va, vb = self._vec(a, slope_a), self._vec(b, slope_b)
    return prior[slope_a, slope_b](a, b) - va @ np.linalg.solve(self.G, vb)

  # probLineSearch.m's names
  def V(self, t):
    return self.cov(t, t)

  def Vd(self, t):
    return self.cov(t, t, False, True)

  def dVd(self, t):
    return self.cov(t, t, True, True)

  def cubic_minimum(self, ts):
    d1, d2, d3 = self.d1m(ts), self.d2m(ts), self.d3m(ts)
    a = 0.5 * d3
    b = d2 - ts * d3
    c = d1 - d2 * ts + 0.5 * d3 * ts**2
    if abs(d3) < 1e-9:
      return -(d1 - ts * d2) / d2
    det = b**2 - 4 * a * c
    if det < 0:
      return math.inf
    lr = (-b - np.sign(a) * math.sqrt(det)) / (2 * a)
    rr = (-b + np.sign(a) * math.sqrt(det)) / (2 * a)
    value = lambda s: d1 * (s - ts) + 0.5 * d2 * (s - ts)**2 + d3 * (s - ts)**3 / 6  # noqa: E731
    return lr if value(lr) < value(rr) else rr


# --- the Wolfe probability ---------------------------------------------------------------


def bivariate_rectangle(x_low, y_low, y_high, rho):
  """``P(X > x_low, y_low < Y < y_high)``, standard normals with correlation ``rho``:
  the integral over ``y`` of ``phi(y) P(X > x_low | Y = y)``."""
  rho = min(max(rho, -1.0), 1.0)
  if abs(rho) == 1.0:
    lo, hi = (max(y_low, x_low), y_high) if rho > 0 else (y_low, min(y_high, -x_low))
    return max(0.0, scipy.stats.norm.cdf(hi) - scipy.stats.norm.cdf(lo))
  s = math.sqrt(1 - rho**2)
  integrand = lambda y: scipy.stats.norm.pdf(y) * scipy.stats.norm.sf((x_low - rho * y) / s)  # noqa: E731
  lo, hi = max(y_low, -40.0), min(y_high, 40.0)
  if lo >= hi:
    return 0.0
  value, _ = scipy.integrate.quad(integrand, lo, hi, epsabs=1e-13, epsrel=1e-11, limit=200)
  return min(max(value, 0.0), 1.0)


def prob_wolfe(gp, t, c1, c2):
  """``probWolfe`` of the MATLAB code."""
  m0, dm0 = gp.m(0.0), gp.d1m(0.0)
  V0, Vd0, dVd0 = gp.V(0.0), gp.Vd(0.0), gp.dVd(0.0)
  V0f = gp.cov(0.0, t)
  Vd0f = gp.cov(0.0, t, True, False)
  V0df = gp.cov(0.0, t, False, True)
  Vd0df = gp.cov(0.0, t, True, True)
  ma = m0 - gp.m(t) + c1 * t * dm0
  Vaa = V0 + (c1 * t)**2 * dVd0 + gp.V(t) + 2 * (c1 * t * (Vd0 - Vd0f) - V0f)
  mb = gp.d1m(t) - c2 * dm0
  Vbb = c2**2 * dVd0 - 2 * c2 * Vd0df + gp.dVd(t)
  Vab = -c2 * (Vd0 + c1 * t * dVd0) + V0df + c2 * Vd0f + c1 * t * Vd0df - gp.Vd(t)
  if Vaa < 1e-9 and Vbb < 1e-9:
    return float(ma >= 0 and mb >= 0)
  if Vaa <= 0 or Vbb <= 0:
    return 0.0
  rho = Vab / math.sqrt(Vaa * Vbb)
  # (gradtx) dVd0 clipped at 0: without noise it is 0 up to rounding, and may be negative
  upper = (2 * c2 * (abs(dm0) + 2 * math.sqrt(max(dVd0, 0.0))) - mb) / math.sqrt(Vbb)
  return bivariate_rectangle(-ma / math.sqrt(Vaa), -mb / math.sqrt(Vbb), upper, rho)


def expected_improvement(m, s, eta):
  if s == 0:
    return max(eta - m, 0.0)
  z = (eta - m) / s
  return (eta - m) * scipy.stats.norm.cdf(z) + s * scipy.stats.norm.pdf(z)


# --- one step of the search (the MATLAB loop body) ---------------------------------------


def search_step(gp, tt, ext, c1, c2, threshold, limit=6):
  """After evaluating ``tt``: ``("take", t, why)`` a point, or ``("next", t, ext, why)``
  the next trial. ``len(gp.T) == limit + 2`` is the evaluation after the loop."""
  T, N = gp.T, len(gp.T)
  if prob_wolfe(gp, tt, c1, c2) > threshold:
    return ("take", tt, "accept")
  if N == limit + 2:  # reached the limit: the trial with the lowest mean, t=0 excluded
    M = [math.inf] + [gp.m(t) for t in T[1:]]
    return ("take", T[int(np.argmin(M))], "budget")
  M = [gp.m(t) for t in T]
  minj = int(np.argmin(M))
  minm, tmin = M[minj], T[minj]
  if abs(gp.d1m(tmin)) < 1e-5 and gp.Vd(tmin) < 1e-4:
    return ("take", tmin, "certain")
  Tsort = sorted(T)
  Tcand, wolfes = [], []
  for cel in range(N - 1):
    trep = Tsort[cel] + 1e-6 * (Tsort[cel + 1] - Tsort[cel])
    cc = gp.cubic_minimum(trep)
    if Tsort[cel] < cc < Tsort[cel + 1]:
      Tcand.append(cc)
    elif cel == 0 and gp.d1m(0.0) > 0:
      return ("take", 0.01 * (Tsort[cel] + Tsort[cel + 1]), "steep")
    if cel > 0 and prob_wolfe(gp, Tsort[cel], c1, c2) > threshold:
      wolfes.append(Tsort[cel])
  if wolfes:
    return ("take", min(wolfes, key=gp.m), "wolfe")
  Tcand.append(max(T) + ext)
  scores = [expected_improvement(gp.m(t), math.sqrt(max(gp.V(t), 0.0)), minm)
            * prob_wolfe(gp, t, c1, c2) for t in Tcand]
  best = int(np.nanargmax(scores))
  if best == len(Tcand) - 1:  # (gradtx) the extrapolation was chosen
    return ("next", Tcand[best], 2 * ext, "extrapolation")
  return ("next", Tcand[best], ext, "cubic")


# --- the optimiser ------------------------------------------------------------------------


class OutOfCalls(Exception):
  pass


def run(objective, x0, num_calls, direction=lambda g: -g, initial_step_size=1e-2, c1=0.05,
        c2=0.5, threshold=0.3, growth=1.3, log=None):
  """The points (flat float64 vectors) at which ``objective(x) -> (f, g, var_f, var_g)``
  is called, ``num_calls`` of them, by repeated line searches along ``direction(g)``;
  ``log`` (a list) receives the reason of every step of the searches."""
  log = [] if log is None else log
  points = []

  def evaluate(x):
    if len(points) == num_calls:
      raise OutOfCalls
    points.append(np.array(x, np.float64))
    return objective(x)

  x = np.asarray(x0, np.float64)
  alpha0 = stats = None
  try:
    obs = evaluate(x)
    while True:
      f0, df0, var_f0, var_df0 = obs
      d = direction(df0)
      beta = abs(d @ df0)
      if alpha0 is None:  # (gradtx) the first step moves by initial_step_size
        alpha0 = initial_step_size / np.linalg.norm(d)
        stats = alpha0
      sigmaf2 = var_f0 / (alpha0 * beta)**2
      sigmadf2 = ((d**2) @ var_df0) / beta**2
      T, Y, dY = [0.0], [0.0], [(df0 @ d) / beta]
      tt, ext, last_obs = 1.0, 1.0, None
      while True:
        obs_t = evaluate(x + tt * alpha0 * d)
        f, g = obs_t[0], obs_t[1]
        T.append(tt)
        Y.append((f - f0) / (alpha0 * beta))
        dY.append((g @ d) / beta)
        last_obs = obs_t
        gp = GP(T, Y, dY, sigmaf2, sigmadf2)
        step = search_step(gp, tt, ext, c1, c2, threshold)
        log.append(step[-1])
        if step[0] == "take":
          taken = step[1]
          break
        tt, ext = step[1], step[2]
      # make_outs
      step_size = taken * alpha0
      stats = 0.95 * stats + 0.05 * step_size
      alpha0_next = step_size * growth
      if alpha0_next > 1e2 * stats or alpha0_next < 1e-2 * stats:
        alpha0_next = stats
      x = x + step_size * d
      alpha0 = alpha0_next
      # (gradtx) a point other than the last trial is evaluated again
      obs = last_obs if taken == tt else evaluate(x)
  except OutOfCalls:
    pass
  return points
