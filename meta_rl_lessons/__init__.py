"""meta_rl_lessons: the library behind the executable textbook *Meta-Optimization for Deep RL*.

Subpackages follow the book's parts:

- :mod:`meta_rl_lessons.rl`: deep RL basics (policies, sampling, advantages, REINFORCE, TRPO, PPO);
- :mod:`meta_rl_lessons.envs`: meta-RL task families (bandits, tabular MDPs, 2D navigation, MuJoCo);
- :mod:`meta_rl_lessons.maml`: MAML, supervised and for RL;
- :mod:`meta_rl_lessons.rl2`: recurrent meta-RL (RL²);
- :mod:`meta_rl_lessons.adaptive`: meta-optimizers over architecture and hyperparameters.

:mod:`meta_rl_lessons.budget` scales every experiment (smoke / book / full), and
:func:`meta_rl_lessons.show.show_source` shows the package's code inside the chapters.
"""

__version__ = "0.1.0"
