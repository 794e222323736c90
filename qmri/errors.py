"""Exceptions raised by qmri for bad input.

Every error meant for a user (wrong shapes, unreadable files, impossible acquisitions) is a
:class:`QMRIInputError`, a :class:`ValueError` whose message is one line naming the culprit.
The command line turns it into ``qmri: error: <message>`` and exit code 2.
"""


class QMRIInputError(ValueError):
    """Bad input: a file, shape, acquisition or option that qmri cannot use (one-line message)."""


class OutputExistsError(QMRIInputError):
    """An output file exists already and overwriting was not requested (``force=False``)."""


class OutputFolderError(QMRIInputError):
    """Outputs cannot be written where asked: a folder that is not one or is not writable, a full
    disk, a read-only file system (one line naming the folder and the cause)."""
