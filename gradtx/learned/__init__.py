"""Learned optimizers: an LSTM optimizer meta-trained by gradient descent.

Andrychowicz et al., "Learning to learn by gradient descent by gradient descent", NeurIPS
2016. The update rule is a small coordinatewise LSTM, ``theta_{t+1} = theta_t +
g_phi(grad_t)``, whose weights ``phi`` are trained by unrolling the optimisation and
differentiating through it:

>>> import gradtx as gtx
>>> tx = gtx.learned.lstm_optimizer(gtx.learned.pretrained("quadratic"))
>>> meta_params, history = gtx.learned.meta_train("quadratic", steps=10)  # doctest: +SKIP

``python -m gradtx.learned --out DIR`` meta-trains and saves meta-parameters (load them
with :func:`load_meta_params`); ``--out gradtx/learned/pretrained`` reproduces the
shipped ones.
"""

from gradtx.learned.evaluation import evaluate, tune_learning_rate
from gradtx.learned.lstm import (LSTMOptimizerState, MetaParams, init_meta_params,
                                 lstm_optimizer, preprocess)
from gradtx.learned.meta_train import MetaTrainResult, meta_loss, meta_train
from gradtx.learned.problems import (ProblemFamily, digits_mlp, get_family, quadratic,
                                     sample_problems)
from gradtx.learned.serialization import (load_meta_params, pretrained, pretrained_config,
                                          save_meta_params)

__all__ = ["LSTMOptimizerState", "MetaParams", "MetaTrainResult", "ProblemFamily",
           "digits_mlp", "evaluate", "get_family", "init_meta_params", "load_meta_params",
           "lstm_optimizer", "meta_loss", "meta_train", "preprocess", "pretrained",
           "pretrained_config", "quadratic", "sample_problems", "save_meta_params",
           "tune_learning_rate"]
