"""birds-tf: sparse adversarial training (Robust Bird, Flying Bird, Flying Bird+) in Keras 3."""
__version__ = "0.1.0"
