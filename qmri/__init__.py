"""qmri: quantitative functional MRI fitting (IVIM, DKI, DCE) with fast Numba least squares."""

__version__ = "0.1.0"
