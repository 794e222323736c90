"""qmri: quantitative functional MRI fitting (IVIM, ADC, DKI, T1, DCE) with fast Numba least squares."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# The command line (``cli/``) and the phantom definitions (``phantoms/``) sit beside this package
# in the source tree and are installed inside it as ``qmri.cli`` and ``qmri.phantoms``. In a source
# checkout (no installation, or the source folder first on ``sys.path``) the repository root joins
# this package's search path so that the same two names import.
_root = _Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "cli" / "__init__.py").is_file():
    __path__.append(str(_root))
