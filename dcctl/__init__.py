"""dcctl: provision, check and benchmark AI GPU clusters over SSH."""

__version__ = "0.1.0"
