"""facecore's version (a leaf module: importing it imports nothing else of facecore)."""

__version__ = "0.1.0"
