"""Meta-RL task families on gymnasium and MuJoCo, with batched pure-torch versions of the cheap ones."""
