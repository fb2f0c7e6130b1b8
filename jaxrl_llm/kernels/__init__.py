"""Hand-written kernels for backends where XLA's own leave speed on the table (see each module)."""
