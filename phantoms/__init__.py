"""Phantom (digital reference object) definitions, as JSON data (installed as ``qmri.phantoms``)."""
