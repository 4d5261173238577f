"""Drop uniform-accuracy groups (DAPO's filter without the refill).

    keep_g = 1 if the accuracies of group g are not all equal, else 0

Kept groups' completions enter the loss; dropped ones leave it and its normalisers (N, Σ|o|, P). The batch shrinks
step to step, so the effective batch size varies; ``resample`` refills it.
"""

from lgrpo_bench.algorithms.group_filter.mixed import mixed_accuracy_groups

NAME = "drop"
SUMMARY = "groups whose accuracy is uniform (all correct or all wrong) leave the loss and its normaliser; the batch shrinks"


def keep_groups(accuracy):
    return mixed_accuracy_groups(accuracy)
