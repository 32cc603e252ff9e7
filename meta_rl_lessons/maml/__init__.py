"""MAML: supervised (sinusoid regression) and for RL. Built in the MAML chapter's issue."""
