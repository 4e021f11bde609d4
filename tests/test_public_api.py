"""The public surface: exported, documented, and presented as graceful_async.X."""

from __future__ import annotations
import __future__

import re
import types
from pathlib import Path

import graceful_async

DOCS = Path(__file__).parent.parent / "docs"


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and names exactly the public attributes."""
    assert graceful_async.__all__ == sorted(graceful_async.__all__)
    public = {
        name
        for name, value in vars(graceful_async).items()
        if not name.startswith("_")
        and not isinstance(value, (__future__._Feature, types.ModuleType))  # testing, contrib
    }
    assert public == set(graceful_async.__all__)


def test_public_objects_say_graceful_async() -> None:
    """Functions and classes report graceful_async as their module, and have docstrings."""
    for name in graceful_async.__all__:
        obj = getattr(graceful_async, name)
        if callable(obj):
            assert obj.__module__ == "graceful_async", name
            assert obj.__doc__, f"{name} needs a docstring"


def test_reference_documents_every_public_name() -> None:
    """The API reference lists every exported name, and nothing that isn't exported."""
    text = (DOCS / "reference.md").read_text()
    documented = set(re.findall(r"^::: graceful_async\.(\w+)$", text, re.MULTILINE))
    assert documented == set(graceful_async.__all__)


def test_reference_documents_the_testing_module() -> None:
    """graceful_async.testing: every name in its __all__ is documented, and only those."""
    import graceful_async.testing

    text = (DOCS / "reference.md").read_text()
    documented = set(re.findall(r"^::: graceful_async\.testing\.(\w+)$", text, re.MULTILINE))
    assert documented == set(graceful_async.testing.__all__)
    for name in graceful_async.testing.__all__:
        assert getattr(graceful_async.testing, name).__doc__, f"{name} needs a docstring"


def test_reference_documents_every_contrib_module() -> None:
    """Each public module of graceful_async.contrib has its section in the reference."""
    text = (DOCS / "reference.md").read_text()
    documented = set(re.findall(r"^::: graceful_async\.contrib\.(\w+)$", text, re.MULTILINE))
    contrib = Path(graceful_async.__file__).parent / "contrib"
    modules = {path.stem for path in contrib.glob("*.py") if not path.stem.startswith("_")}
    assert documented == modules
