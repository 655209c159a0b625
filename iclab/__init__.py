"""iclab: a laboratory for in-context learning of function classes."""

__version__ = "0.1.0"
