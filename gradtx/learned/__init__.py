"""Learned optimizers: an LSTM and a hierarchical RNN, meta-trained by gradient descent.

Andrychowicz et al., "Learning to learn by gradient descent by gradient descent", NeurIPS
2016. The update rule is a small coordinatewise LSTM, ``theta_{t+1} = theta_t +
g_phi(grad_t)``, whose weights ``phi`` are trained by unrolling the optimisation and
differentiating through it:

>>> import gradtx as gtx
>>> tx = gtx.learned.lstm_optimizer(gtx.learned.pretrained("quadratic"))
>>> meta_params, history = gtx.learned.meta_train("quadratic", steps=10)  # doctest: +SKIP

Wichrowska et al., "Learned Optimizers that Scale and Generalize", ICML 2017: a
hierarchical RNN (per-parameter, per-tensor and global GRUs) fed scale-free features
(momenta at five timescales normalised by the gradient's RMS, the relative log learning
rate) that outputs an attention over the timescales and a change of per-parameter log
learning rates. Its meta-training on a mixture of small problems (quadratics, digits MLPs
and convnets), with the exact meta-gradient over whole 200-step runs, is selected on
validation problems; the shipped ``pretrained("hierarchical")`` weights, which
``python -m gradtx.learned --optimizer hierarchical`` returns as its best checkpoint, are
a few percent better on held-out problems than their Adam-like starting point
(``init_hierarchical_meta_params`` with learning rate 0.1):

>>> tx = gtx.learned.hierarchical_optimizer(gtx.learned.pretrained("hierarchical"))
>>> meta_params, history = gtx.learned.meta_train(  # doctest: +SKIP
...     ["quadratic", "mlp"], optimizer="hierarchical", horizon=200, steps=100)

``python -m gradtx.learned --out DIR`` meta-trains and saves the LSTM's meta-parameters,
``python -m gradtx.learned --optimizer hierarchical --out DIR`` the hierarchical
optimizer's (DIR/hierarchical.npz; load them with :func:`load_meta_params`);
``--out gradtx/learned/pretrained`` reproduces the shipped ones.
``benchmarks/learned_generalisation.py`` compares the shipped hierarchical optimizer with
tuned Adam on held-out problems.
"""

from gradtx.learned.evaluation import evaluate, tune_learning_rate
from gradtx.learned.hierarchical import (HierarchicalOptimizerState, hierarchical_optimizer,
                                         init_hierarchical_meta_params)
from gradtx.learned.lstm import (LSTMOptimizerState, MetaParams, init_meta_params,
                                 lstm_optimizer, preprocess)
from gradtx.learned.meta_train import MetaTrainResult, meta_loss, meta_train
from gradtx.learned.problems import (ProblemFamily, digits_convnet, digits_mlp, get_family,
                                     quadratic, sample_problems)
from gradtx.learned.serialization import (load_meta_params, pretrained, pretrained_config,
                                          save_meta_params)

__all__ = ["HierarchicalOptimizerState", "LSTMOptimizerState", "MetaParams",
           "MetaTrainResult", "ProblemFamily", "digits_convnet", "digits_mlp", "evaluate",
           "get_family", "hierarchical_optimizer", "init_hierarchical_meta_params",
           "init_meta_params", "load_meta_params", "lstm_optimizer", "meta_loss",
           "meta_train", "preprocess", "pretrained", "pretrained_config", "quadratic",
           "sample_problems", "save_meta_params", "tune_learning_rate"]
