"""The gymnasium ids of the task families, registered without importing any environment code.

:func:`register_envs` only tells gymnasium where each environment class lives (``"module:Class"`` strings),
so it is cheap: no torch, no MuJoCo. It runs when :mod:`meta_rl_lessons.envs` is imported and, through
:mod:`meta_rl_lessons._gym_hook`, whenever ``gymnasium`` is imported in an environment where this package is
installed, so ``gymnasium.make("MetaRL/HalfCheetahVel-v0")`` works in a fresh interpreter.
"""

from __future__ import annotations

__all__ = ["ENTRY_POINTS", "ENV_IDS", "WARP_FAMILIES", "WARP_VECTOR_ENTRY_POINT", "register_envs"]

#: Where gymnasium finds each family's environment class, by family name.
ENTRY_POINTS: dict[str, str] = {
    "BernoulliBandit": "meta_rl_lessons.envs.bandit:BernoulliBanditEnv",
    "TabularMDP": "meta_rl_lessons.envs.tabular_mdp:TabularMDPEnv",
    "Navigation2D": "meta_rl_lessons.envs.navigation:Navigation2DEnv",
    "HalfCheetahVel": "meta_rl_lessons.envs.locomotion:HalfCheetahVelEnv",
    "HalfCheetahDir": "meta_rl_lessons.envs.locomotion:HalfCheetahDirEnv",
    "AntVel": "meta_rl_lessons.envs.locomotion:AntVelEnv",
    "AntDir": "meta_rl_lessons.envs.locomotion:AntDirEnv",
    "AntGoal": "meta_rl_lessons.envs.locomotion:AntGoalEnv",
    "Inventory": "meta_rl_lessons.envs.inventory:InventoryEnv",
}
#: The gymnasium ids, ``MetaRL/<Name>-v0``.
ENV_IDS: tuple[str, ...] = tuple(f"MetaRL/{name}-v0" for name in ENTRY_POINTS)


#: The families whose gymnasium vector env also exists on MuJoCo Warp (the locomotion families).
WARP_FAMILIES: tuple[str, ...] = ("HalfCheetahVel", "HalfCheetahDir", "AntVel", "AntDir", "AntGoal")
#: Their vector env, registered as ``MetaRLWarp/<Name>-v0`` (a vector entry point only: ``gymnasium.make_vec``
#: builds it, ``gymnasium.make`` has nothing to build). A namespace of its own, so that ``make_vec`` of a
#: ``MetaRL/<Name>-v0`` id keeps building gymnasium's ``SyncVectorEnv`` of C-MuJoCo envs.
WARP_VECTOR_ENTRY_POINT = "meta_rl_lessons.envs.warp_vector:WarpVectorEnv"


def register_envs() -> None:
    """Register every ``MetaRL/<Name>-v0`` id with gymnasium (idempotent)."""
    from gymnasium.envs.registration import register, registry

    # Horizons live inside the envs (``horizon`` / ``episode_length`` keyword), not in a TimeLimit wrapper,
    # so the gymnasium and batched versions share one definition; hence no max_episode_steps here.
    for name, entry in ENTRY_POINTS.items():
        env_id = f"MetaRL/{name}-v0"
        if env_id not in registry:
            register(id=env_id, entry_point=entry)
    for name in WARP_FAMILIES:  # rl.sampling.make_vector_env(..., physics="warp") builds these
        warp_id = f"MetaRLWarp/{name}-v0"
        if warp_id not in registry:
            register(id=warp_id, vector_entry_point=WARP_VECTOR_ENTRY_POINT,
                     kwargs={"env_id": f"MetaRL/{name}-v0"})
