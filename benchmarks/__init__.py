"""Speed benchmarks: our PGD-AT step side by side with the PyTorch reference (``make bench``)."""
