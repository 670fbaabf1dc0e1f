"""mlpcli: multilayer perceptrons on classic image features, backprop written by hand in NumPy."""

__version__ = "0.1.0"
