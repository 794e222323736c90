"""Command-line front end of qmri (installed as ``qmri.cli``; console script ``qmri``)."""
