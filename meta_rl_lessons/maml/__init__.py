"""MAML: supervised (sinusoid regression, :mod:`.supervised`) and for RL (MAML-TRPO, :mod:`.rl`).

The chapters ``chapters/02-maml-derivation.ipynb`` and ``chapters/02b-maml-rl.ipynb`` derive and use them.
"""

from meta_rl_lessons.maml.rl import ESTIMATORS, MAMLTRPO, MAMLTRPOConfig
from meta_rl_lessons.maml.supervised import SinusoidConfig, SinusoidFamily, SinusoidTrainer, train_sinusoid

__all__ = ["ESTIMATORS", "MAMLTRPO", "MAMLTRPOConfig", "SinusoidConfig", "SinusoidFamily", "SinusoidTrainer",
           "train_sinusoid"]
