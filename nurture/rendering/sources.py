"""Where email templates come from: files now, stored (database) templates later, behind one Jinja loader.

A source answers ``get(name) -> (source, version) | None``. The version is whatever changes when the text
changes (a content hash for files, a revision number for stored templates); compiled emails are cached under
the versions of every template they are assembled from, so an edit is picked up on the next compile and
nothing is recompiled while nothing changed.

Emails come in languages: ``welcome.fr.html`` (with its ``welcome.fr.txt``) is the French variant of
``welcome.html``. ``EmailTemplateLoader.localized(name, locale)`` picks the variant of the lead's language
when one exists in any source (a stored ``welcome.fr.html`` counts like a file), else the name itself: the
default, written in the instance's main language. A variant is a complete email (subject block included).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

import jinja2

TEMPLATE_SUFFIXES = (".html", ".txt")
_LANGUAGE = re.compile(r"[a-z]{2,3}")


@runtime_checkable
class TemplateSource(Protocol):
    """One place templates are kept. ``get`` returns ``(source, version)`` or ``None`` when it has no such name."""

    def get(self, name: str) -> tuple[str, str] | None: ...

    def list_names(self) -> Iterable[str]: ...


@dataclass(frozen=True)
class LoadedTemplate:
    name: str
    source: str
    version: str


def content_version(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def default_template_directory() -> Path:
    """``nurture/email_templates/``, shipped inside the package."""
    return Path(__file__).resolve().parents[1] / "email_templates"


def is_valid_name(name: str) -> bool:
    """A relative path inside the template directory: no ``..``, no absolute path, no backslash."""
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name


def language_of(locale: str | None) -> str | None:
    """The language part of a locale (``fr`` of ``fr_CA`` or ``fr-CA``), lowercased; None when there is none."""
    language = (locale or "").replace("-", "_").partition("_")[0].strip().lower()
    return language if _LANGUAGE.fullmatch(language) else None


def localized_name(name: str, language: str) -> str:
    """The name of the ``language`` variant of template ``name``: ``welcome.html`` -> ``welcome.fr.html``,
    ``onboarding/day-3`` -> ``onboarding/day-3.fr`` (a campaign's ``template:`` may leave ``.html`` out)."""
    for suffix in TEMPLATE_SUFFIXES:
        if name.endswith(suffix):
            return f"{name[: -len(suffix)]}.{language}{suffix}"
    return f"{name}.{language}"


class FileTemplateSource:
    """Templates in a directory, named by their path relative to it (``welcome.html``, ``partials/button.html``).

    The content hash is kept with the file's size and modification time, so asking for the version of an
    unchanged file costs a ``stat``, not a read."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._cache: dict[str, tuple[int, int, str, str]] = {}

    def get(self, name: str) -> tuple[str, str] | None:
        if not is_valid_name(name):
            return None
        path = self.directory / name
        try:
            stat = path.stat()
        except OSError:
            return None
        if not path.is_file():
            return None
        cached = self._cache.get(name)
        if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
            return cached[2], cached[3]
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        version = content_version(source)
        self._cache[name] = (stat.st_mtime_ns, stat.st_size, source, version)
        return source, version

    def list_names(self) -> list[str]:
        names = []
        for root, _dirs, files in os.walk(self.directory):
            for file in files:
                if file.endswith(TEMPLATE_SUFFIXES):
                    names.append((Path(root) / file).relative_to(self.directory).as_posix())
        return sorted(names)


class DictTemplateSource:
    """Templates held in memory, by name: a draft being edited (previewed before it is saved), tests."""

    def __init__(self, templates: dict[str, str] | None = None) -> None:
        self.templates = dict(templates or {})

    def get(self, name: str) -> tuple[str, str] | None:
        source = self.templates.get(name)
        return None if source is None else (source, content_version(source))

    def list_names(self) -> list[str]:
        return sorted(self.templates)


class EmailTemplateLoader(jinja2.BaseLoader):
    """Resolves a name through the sources in order (put stored templates first so an edit made in the UI
    overrides the shipped file of the same name). Usable as a plain Jinja loader too."""

    def __init__(self, *sources: TemplateSource) -> None:
        if not sources:
            raise ValueError("EmailTemplateLoader needs at least one source")
        self.sources = sources

    def find(self, name: str) -> LoadedTemplate | None:
        for source in self.sources:
            found = source.get(name)
            if found is not None:
                return LoadedTemplate(name, found[0], found[1])
        return None

    def localized(self, name: str, locale: str | None) -> str:
        """The variant of ``name`` in the language of ``locale`` when there is one, else ``name`` (the default)."""
        language = language_of(locale)
        if language is None:
            return name
        variant = localized_name(name, language)
        return variant if self.find(variant) is not None else name

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        loaded = self.find(template)
        if loaded is None:
            raise jinja2.TemplateNotFound(template)

        def uptodate() -> bool:
            current = self.find(template)
            return current is not None and current.version == loaded.version

        return loaded.source, template, uptodate

    def list_templates(self) -> list[str]:
        return sorted({name for source in self.sources for name in source.list_names()})
