"""Datasets, their pixels, and the degradations tasks make of them."""
