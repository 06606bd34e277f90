"""Reading real-world CSV exports as a stream of records: encoding and delimiter detection, physical line
numbers, and a clear refusal of files that are not CSV text at all.

Encoding rule (decided on the first 64 KiB, then applied to the whole stream without reading it all):

1. A byte-order mark decides: UTF-8, UTF-16 LE/BE or UTF-32 LE/BE.
2. No BOM but NUL bytes on every other position: UTF-16 without BOM (LE or BE). Other NUL bytes: binary.
3. The sample decodes as strict UTF-8: UTF-8. Should a byte sequence that is not UTF-8 appear later in the
   file, those bytes alone are read as Windows-1252 (when the sample was plain ASCII this is exactly what
   detecting Windows-1252 up front would have given).
4. Otherwise Windows-1252, with its five undefined bytes read as Latin-1 so that no byte is ever lost.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from nurture.errors import NurtureError

SAMPLE_BYTES = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")
_SNIFF_RECORDS = 50
_CP1252_FALLBACK = "nurture-cp1252-fallback"
_LATIN1_FALLBACK = "nurture-latin1-fallback"

_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its LE mark starts with the UTF-16 LE mark.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class UnusableFile(NurtureError):
    """The file as a whole cannot be imported (missing, empty, binary, undecodable, no usable header)."""


def _latin1_for_undefined(error: UnicodeError) -> tuple[str, int]:
    # Windows-1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined; Latin-1 maps every byte.
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return bytes(error.object[error.start : error.end]).decode("latin-1"), error.end


def _cp1252_for_invalid_utf8(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = bytes(error.object[error.start : error.end])
    return bad.decode("cp1252", _LATIN1_FALLBACK), error.end


codecs.register_error(_LATIN1_FALLBACK, _latin1_for_undefined)
codecs.register_error(_CP1252_FALLBACK, _cp1252_for_invalid_utf8)


@dataclass(frozen=True)
class Encoding:
    codec: str
    errors: str
    label: str


UTF8 = Encoding("utf-8", _CP1252_FALLBACK, "utf-8")
CP1252 = Encoding("cp1252", _LATIN1_FALLBACK, "windows-1252")


class Record(NamedTuple):
    """One CSV record. ``line`` is the physical line where it starts (1-based, counting the header);
    ``error`` is set, and ``values`` may be partial, when the record itself could not be parsed."""

    line: int
    values: list[str]
    error: str | None = None


class _CountingReader(io.RawIOBase):
    """The already-read sample followed by the rest of the stream, counting bytes for progress."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        self._prefix = memoryview(prefix)
        self._rest = rest
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        if self._prefix:
            count = min(len(target), len(self._prefix))
            target[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
        else:
            chunk = self._rest.read(len(target))
            count = len(chunk)
            target[:count] = chunk
        self.bytes_read += count
        return count


def _read_sample(stream: BinaryIO) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < SAMPLE_BYTES:
        chunk = stream.read(SAMPLE_BYTES - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _utf16_without_bom(sample: bytes) -> str | None:
    """Mostly-ASCII UTF-16 text has a NUL in every other byte; which half tells the byte order."""
    even = sample[0::2]
    odd = sample[1::2]
    if not even or not odd:
        return None
    even_nuls = even.count(0) / len(even)
    odd_nuls = odd.count(0) / len(odd)
    if odd_nuls > 0.4 and even_nuls < 0.05:
        return "utf-16-le"
    if even_nuls > 0.4 and odd_nuls < 0.05:
        return "utf-16-be"
    return None


def detect_encoding(sample: bytes, *, complete: bool) -> Encoding:
    """The encoding of a file whose first bytes are ``sample`` (``complete`` when that is the whole file)."""
    for bom, codec in _BOMS:
        if sample.startswith(bom):
            return Encoding(codec, "strict", codec.replace("utf-8-sig", "utf-8 with BOM"))
    if b"\x00" in sample:
        codec = _utf16_without_bom(sample)
        if codec is None:
            if sample.startswith(b"PK\x03\x04"):
                raise UnusableFile("is a ZIP archive (an Excel .xlsx workbook?), not CSV text; save it as CSV")
            raise UnusableFile(f"looks binary (NUL byte at offset {sample.index(0)}); expected CSV text")
        return Encoding(codec, "strict", codec)
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(sample, final=complete)
    except UnicodeDecodeError:
        return CP1252
    return UTF8


def _sniff_delimiter(text: str, *, complete: bool) -> str:
    """The candidate that splits the sample into the most consistent records, then the widest header."""
    if not complete:
        # The sample may end inside a record; a cut line would count as inconsistent.
        cut = max(text.rfind("\n"), text.rfind("\r"))
        text = text[: cut + 1] if cut > 0 else text
    best = DELIMITERS[0]
    best_score: tuple[float, int] = (-1.0, 0)
    for delimiter in DELIMITERS:
        rows: list[list[str]] = []
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            for row in reader:
                if row:
                    rows.append(row)
                if len(rows) > _SNIFF_RECORDS:
                    break
        except csv.Error:
            pass
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        data = rows[1:]
        consistency = sum(len(row) == width for row in data) / len(data) if data else 1.0
        score = (consistency, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _looks_binary(text: str) -> bool:
    controls = sum(1 for char in text if char < " " and char not in "\t\r\n")
    return controls > max(8, len(text) // 100)


class CsvSource:
    """An open CSV file: its detected format, its header and a one-pass iterator over its records.

    Memory use is bounded by the 64 KiB sample plus the largest record, whatever the file size."""

    def __init__(self, stream: BinaryIO, *, total_bytes: int | None = None, owns_stream: bool = False) -> None:
        self._owns_stream = owns_stream
        self._stream = stream
        self.total_bytes = total_bytes
        sample = _read_sample(stream)
        complete = len(sample) < SAMPLE_BYTES
        if not sample.strip():
            raise UnusableFile("is empty")
        self.encoding = detect_encoding(sample, complete=complete)
        self._raw = _CountingReader(sample, stream)
        self._text = io.TextIOWrapper(
            io.BufferedReader(self._raw, buffer_size=SAMPLE_BYTES),
            encoding=self.encoding.codec,
            errors=self.encoding.errors,
            newline="",
        )
        # A decoded copy of the sample for sniffing only; the stream re-reads it from the prefix.
        try:
            decoder = codecs.getincrementaldecoder(self.encoding.codec)(self.encoding.errors)
            sample_text = decoder.decode(sample, final=complete)
        except UnicodeDecodeError as exc:
            raise UnusableFile(f"cannot be decoded as {self.encoding.label} ({exc.reason})") from None
        sample_text = sample_text.lstrip("\ufeff")
        if not sample_text.strip():
            raise UnusableFile("is empty")
        if _looks_binary(sample_text):
            raise UnusableFile("looks binary (many control characters); expected CSV text")

        self._lines_before_header = 0
        first_line = sample_text.split("\n", 1)[0].strip("\r").strip()
        explicit = _excel_separator_hint(first_line)
        if explicit is not None:
            self.delimiter = explicit
            self._text.readline()
            self._lines_before_header = 1
        else:
            self.delimiter = _sniff_delimiter(sample_text, complete=complete)
        # The lines of the record being read, so that a record the csv module refuses can still be shown.
        self._record_lines: list[str] = []
        self._reader = csv.reader(self._recording(self._text), delimiter=self.delimiter, strict=True)
        self.header, self.header_line = self._read_header()

    def _read_header(self) -> tuple[list[str], int]:
        while True:
            line = self._reader.line_num + 1 + self._lines_before_header
            try:
                row = next(self._reader)
            except StopIteration:
                raise UnusableFile("is empty (no header row)") from None
            except csv.Error as exc:
                raise UnusableFile(f"line {line}: the header row is not valid CSV ({exc})") from None
            except UnicodeDecodeError as exc:
                raise UnusableFile(f"cannot be decoded as {self.encoding.label} ({exc.reason})") from None
            if any(value.strip() for value in row):
                header = [value.replace("\ufeff", "").strip() for value in row]
                return header, line

    def _recording(self, lines: Iterator[str]) -> Iterator[str]:
        for line in lines:
            self._record_lines.append(line)
            yield line

    @property
    def bytes_read(self) -> int:
        return self._raw.bytes_read

    def records(self) -> Iterator[Record]:
        """Every non-blank record after the header, with the physical line where it starts."""
        reader = self._reader
        offset = self._lines_before_header
        record_lines = self._record_lines
        while True:
            line = reader.line_num + 1 + offset
            record_lines.clear()
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raw = "".join(record_lines).rstrip("\r\n")
                yield Record(line, [raw], f"not valid CSV ({exc})")
                continue
            except UnicodeDecodeError as exc:
                raise UnusableFile(
                    f"cannot be decoded as {self.encoding.label} after line {line - 1} ({exc.reason})"
                ) from None
            if any(values) and "".join(values).strip():
                yield Record(line, values)

    def close(self) -> None:
        if self._owns_stream:
            self._stream.close()

    def __enter__(self) -> CsvSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _excel_separator_hint(first_line: str) -> str | None:
    """Excel writes ``sep=;`` as the first line of some exports to name the delimiter."""
    if len(first_line) == 5 and first_line[:4].lower() == "sep=":
        return first_line[4]
    return None


def open_csv(source: str | os.PathLike[str] | BinaryIO) -> CsvSource:
    """Open a path or a binary stream (such as an uploaded file) as a CSV source."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise UnusableFile("does not exist")
        if path.is_dir():
            raise UnusableFile("is a directory, not a file")
        try:
            stream: BinaryIO = path.open("rb")
        except OSError as exc:
            raise UnusableFile(f"cannot be read ({exc.strerror})") from None
        try:
            return CsvSource(stream, total_bytes=path.stat().st_size, owns_stream=True)
        except BaseException:
            stream.close()
            raise
    return CsvSource(source, total_bytes=_stream_size(source))


def _stream_size(stream: BinaryIO) -> int | None:
    try:
        if not stream.seekable():
            return None
        position = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(position)
        return end - position
    except (OSError, AttributeError, ValueError):
        return None
