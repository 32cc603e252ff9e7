"""RL²: recurrent meta-RL. Built in the RL² chapter's issue."""
