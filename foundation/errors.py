"""Exceptions and warnings raised by CellVQ.

Every message names the problem *and* the fix, so that a user who sees only the last line of a traceback
knows what to do next. All exceptions derive from :class:`CellVQError` and from the builtin exception a
caller would naturally catch (``ValueError``, ``KeyError``, ``OSError``), so ``except ValueError`` keeps
working for code that does not know about CellVQ.
"""

from __future__ import annotations

__all__ = [
    "CellVQError",
    "CountsValidationError",
    "DuplicateGenesError",
    "EmptyCellsError",
    "VocabularyMismatchError",
    "CorruptFileError",
    "CheckpointError",
    "MissingKeyError",
    "LowGeneMatchWarning",
    "UntrainedGenesWarning",
]


class CellVQError(Exception):
    """Base class of every error CellVQ raises on purpose."""


class CountsValidationError(CellVQError, ValueError):
    """The expression matrix is not raw UMI counts (NaN/inf, negative, log-normalised, scaled, ...)."""


class DuplicateGenesError(CellVQError, ValueError):
    """Two or more vars share a gene name, so counts cannot be assigned to one vocabulary gene."""


class EmptyCellsError(CellVQError, ValueError):
    """Some cells have zero total counts; they carry no information and break normalisation."""


class VocabularyMismatchError(CellVQError, ValueError):
    """Too few of the dataset's genes are in the model's gene vocabulary."""


class CorruptFileError(CellVQError, OSError):
    """A file (h5ad, checkpoint) exists but cannot be read."""


class CheckpointError(CellVQError, ValueError):
    """A model checkpoint is corrupt, incomplete or belongs to a different model."""


class MissingKeyError(CellVQError, KeyError):
    """A requested layer / column / obsm key does not exist.

    ``KeyError`` normally renders its message with ``repr`` (quotes, escaped newlines); this subclass
    prints the message as written.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class LowGeneMatchWarning(UserWarning):
    """The dataset matches the gene vocabulary, but less well than expected (results may degrade)."""


class UntrainedGenesWarning(UserWarning):
    """Genes of the full (GENCODE v44) vocabulary that the checkpoint never trained hold many of the counts."""
