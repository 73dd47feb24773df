"""diffbench: a benchmark and evaluation harness for diffusion sampling methods."""
__version__ = "0.1.0"
