"""``meta_rl_lessons.rl.batch.EpisodeBatch``: the experience container, defined in
:mod:`meta_rl_lessons.batch` (the environments' samplers fill it too, and ``envs/`` imports nothing from
``rl/``); this module keeps the import path the chapters and the RL code use."""

from meta_rl_lessons.batch import EpisodeBatch

__all__ = ["EpisodeBatch"]
