"""No group filter: every generated group enters the loss (GRPO, Dr. GRPO, λ-GRPO, TRL).

Groups whose rewards all agree still get A = 0 and contribute no policy gradient, but they count in the
normalisers (N, Σ|o|), which dilutes the other groups' weights.
"""

NAME = "none"
SUMMARY = "every generated group enters the loss"


def keep_groups(accuracy):
    return accuracy.new_ones(accuracy.shape[0]).bool()
