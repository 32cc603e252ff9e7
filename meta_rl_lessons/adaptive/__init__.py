"""Adaptive DRL: meta-optimizers over architecture and hyperparameters. Built in its chapter's issue."""
