"""The experiment layer: folds x runs x systems over training and evaluation, resume,
results, noise evaluation's loop, predict's model loading and sweeps."""
