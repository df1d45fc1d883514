"""The mechanism analyses of analyze.py, one module each: weights, kl, gains, self_verify."""
