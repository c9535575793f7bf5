"""studyspec: a declarative study engine for the science of sparse neural networks."""

__version__ = "0.1.0"
