"""The error an optional dependency's absence raises: it names the extra that installs it."""

DISTRIBUTION = "neural-embeddings-rank"  # the package index name; `ner` there is an unrelated project


def missing_extra(package: str, extra: str, error: ImportError) -> ImportError:
    """An ImportError saying which ``pip install`` line brings ``package``."""
    return ImportError(f'{package} is not installed: pip install "{DISTRIBUTION}[{extra}]" ({error})')
