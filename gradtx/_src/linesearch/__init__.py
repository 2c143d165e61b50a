"""Line searches: a step size along a given direction, found by evaluating the loss.

A line search is a transform placed after a search direction ``u`` (the negative
gradient, an L-BFGS or Newton direction): it looks for ``eta`` such that
``f(w + eta u)`` decreases enough, and emits ``eta u``. It reads the loss at the params
(``value=``), its gradient (``grad=``) and the loss as a function of the params
(``value_fn=``) from the extra arguments (Optax's convention); further extras named in
``value_fn``'s signature (a batch, say) are passed on to it.

* :func:`scale_by_backtracking_linesearch` (``backtracking``): Armijo's sufficient
  decrease, the step shrunk by a constant factor until it holds (Nocedal & Wright 2006,
  Algorithm 3.1); optionally (``curv_rtol=``, an addition to Optax's signature) also the
  weak Wolfe curvature condition, bracketed as Lewis & Overton (2013) do.
* :func:`scale_by_zoom_linesearch` (``zoom``): the strong Wolfe conditions, an interval
  search followed by zoom with cubic/quadratic interpolation (Nocedal & Wright 2006,
  Algorithms 3.5 and 3.6), with Hager & Zhang's (2006) approximate Wolfe test near a
  minimum.
* :func:`scale_by_more_thuente_linesearch` (``more_thuente``): the strong Wolfe
  conditions by MINPACK-2's ``dcsrch`` (More & Thuente 1994), L-BFGS-B's search.

``common`` holds what they share (the extra-argument checks, the Wolfe searches' initial
state and first trial, the loop whose first trial is taken before it).

All keep the value (and gradient) at the accepted step in their state, so a full-batch
loop need not evaluate the loss again: :func:`value_and_grad_from_state`
(``value_and_grad``). The backtracking and zoom searches' signatures, defaults and
numerics are Optax 0.2.8's, with these departures, all confined to failed searches or to
Optax's errors:

* extra arguments that ``value_fn`` does not name are ignored (the protocol: every transform
  ignores extras it does not use) where Optax raises ``TypeError``;
* a direction with non-finite entries whose search fails gives a zero update, where
  Optax emits ``0 * u``, i.e. NaN;
* after a failed search (step size 0), the next search starts from
  ``max_learning_rate`` (backtracking) or 1 (zoom with ``initial_guess_strategy='keep'``)
  instead of from 0, where Optax stays stuck at a zero step forever;
* scalars in the state are held in the params' widest floating dtype, at least float32.

Each state counts, in ``num_fun_evals`` (int32, cumulative over all updates), the
evaluations of ``value_fn`` the line search made; an evaluation of the value and the
gradient together counts as one. Evaluations made by the caller (the loss and gradient
at the params, e.g. by :func:`value_and_grad_from_state` at the first step) are not
counted.
"""

from gradtx._src.linesearch.backtracking import (BacktrackingLinesearchInfo,
                                                 ScaleByBacktrackingLinesearchState,
                                                 scale_by_backtracking_linesearch)
from gradtx._src.linesearch.more_thuente import (MoreThuenteLinesearchInfo,
                                                 ScaleByMoreThuenteLinesearchState,
                                                 scale_by_more_thuente_linesearch)
from gradtx._src.linesearch.value_and_grad import value_and_grad_from_state
from gradtx._src.linesearch.zoom import (ScaleByZoomLinesearchState, ZoomLinesearchInfo,
                                         scale_by_zoom_linesearch)

__all__ = [
    "BacktrackingLinesearchInfo", "MoreThuenteLinesearchInfo",
    "ScaleByBacktrackingLinesearchState", "ScaleByMoreThuenteLinesearchState",
    "ScaleByZoomLinesearchState", "ZoomLinesearchInfo", "scale_by_backtracking_linesearch",
    "scale_by_more_thuente_linesearch", "scale_by_zoom_linesearch",
    "value_and_grad_from_state",
]
