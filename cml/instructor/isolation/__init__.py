"""Keeping a kernel apart: the sandbox launcher, the watchdog, kernels forked from a zygote."""
