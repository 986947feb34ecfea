"""The out-of-distribution guard: reference statistics and their use at predict/bench time. TF-free."""
