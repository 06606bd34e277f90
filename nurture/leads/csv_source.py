"""Reading real-world CSV exports as a stream of records: encoding and delimiter detection, physical line
numbers, and a clear refusal of files that are not CSV text at all.

Encoding rule:

1. A byte-order mark names the encoding: UTF-8, UTF-16 LE/BE or UTF-32 LE/BE. Without one, NUL bytes on
   every other position of the first 64 KiB mean UTF-16 (LE or BE); more than a few other NUL bytes (8,
   or one per 1,000 bytes) mean a binary file. Fewer reach the importer, which rejects their rows.
   UTF-16 and UTF-32 files are decoded strictly, except that an unpaired surrogate is let through for the
   importer to reject its row (a NUL character likewise): other bytes that are not valid there make the
   whole file unusable, with the line after which they appear.
2. Otherwise (UTF-8 or a legacy 8-bit encoding) each physical line is decoded on its own: as UTF-8 when
   its bytes are valid UTF-8 (or UTF-8 but for encoded surrogates, which the importer then rejects), else
   in the file's legacy encoding. A file saved by different programs may mix the two (one row typed in a
   UTF-8 editor, another pasted from a Windows-1252 export); each row then reads as it was written, where
   decoding the whole file one way would turn ``Zoë`` into ``ZoÃ«``.
3. The legacy encoding is Windows-1252 (what Excel writes in Western locales), unless the first lines that
   are not UTF-8 hold at least 32 non-ASCII bytes, charset-normalizer finds their Windows-1252 reading
   implausible ("mess" ratio 0.2 or more) and names another encoding: then that one (Windows-1251 for a
   Russian export, Windows-1253 for a Greek one, cp932 for a Japanese one). A few names give it little to
   go on, and Central European or Turkish text in Windows-1250/1254 reads as plausible Windows-1252
   (Polish "Ł" as "£"), so it stays Windows-1252: the warning below always names the encoding used.
   Windows-1252's five undefined bytes are read as Latin-1, so that no byte is ever lost; in another
   legacy encoding, a line whose bytes are not valid there either is a bad record (rejected with its
   line and the reason), never replaced silently.
4. ``encoding_warnings`` says so whenever rows were read in the legacy encoding: how many, and when the
   file mixes encodings, how many of each and at which lines.

Memory use is bounded by the 64 KiB sample plus the largest record, whatever the file size.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

from charset_normalizer import from_bytes
from charset_normalizer.md import mess_ratio

from nurture.errors import NurtureError
from nurture.inputs import unstorable_reason

SAMPLE_BYTES = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")
_SNIFF_RECORDS = 50
_LATIN1_FALLBACK = "nurture-latin1-fallback"
# At most this many NUL bytes (or one per 1,000 bytes) in the first 64 KiB are stray characters in rows.
MAX_STRAY_NULS = 8
# How many line numbers a warning names.
SHOWN_LINES = 10

_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its LE mark starts with the UTF-16 LE mark.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# A physical line as the csv module expects one: ended by \r\n, \r or \n (what newline="" gives).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_BYTE_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
# Windows-1252 reads the lines that are not UTF-8 unless charset-normalizer finds that reading messier than
# this (its own default threshold for a plausible decoding).
MESS_THRESHOLD = 0.2
# Fewer non-ASCII bytes than this are too little to judge by (a name or two): Windows-1252.
MIN_EVIDENCE = 32
_ASCII = bytes(range(128))


class UnusableFile(NurtureError):
    """The file as a whole cannot be imported (missing, empty, binary, undecodable, no usable header)."""


def _latin1_for_undefined(error: UnicodeError) -> tuple[str, int]:
    # Windows-1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined; Latin-1 maps every byte.
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return bytes(error.object[error.start : error.end]).decode("latin-1"), error.end


codecs.register_error(_LATIN1_FALLBACK, _latin1_for_undefined)


@dataclass(frozen=True)
class Encoding:
    codec: str
    errors: str
    label: str


UTF8 = Encoding("utf-8", "strict", "utf-8")
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


def _wide_encoding(sample: bytes) -> Encoding | None:
    """UTF-16 or UTF-32 named by a byte-order mark or recognised by its NUL bytes; None for a file
    whose lines are decoded one by one (UTF-8 or legacy). Refuses binary files."""
    for bom, codec in _BOMS:
        if sample.startswith(bom):
            return None if codec == "utf-8-sig" else Encoding(codec, "surrogatepass", codec)
    if sample.startswith(b"PK\x03\x04"):
        raise UnusableFile("is a ZIP archive (an Excel .xlsx workbook?), not CSV text; save it as CSV")
    nuls = sample.count(0)
    if nuls:
        codec = _utf16_without_bom(sample)
        if codec is not None:
            return Encoding(codec, "surrogatepass", codec)
        # A stray NUL or two is the importer's to reject with its row; many make a binary file.
        if nuls > max(MAX_STRAY_NULS, len(sample) // 1000):
            raise UnusableFile(f"looks binary (NUL byte at offset {sample.index(0)}); expected CSV text")
    return None


def _is_utf8(line: bytes) -> bool:
    """UTF-8, encoded surrogates included (they reach the importer, which rejects their row)."""
    try:
        line.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    return True


def _ascii_compatible(codec: str) -> bool:
    """Whether ``codec`` reads ASCII bytes as ASCII, so that line ends and delimiters are what they seem."""
    try:
        return _ASCII.decode(codec) == _ASCII.decode("ascii")
    except (UnicodeDecodeError, LookupError):
        return False


def _label(codec: str) -> str:
    name = codecs.lookup(codec).name
    return f"windows-{name[2:]}" if re.fullmatch(r"cp125\d", name) else name


def detect_legacy_encoding(not_utf8: bytes) -> Encoding:
    """The legacy encoding of lines that are not UTF-8 (see the module docstring, rule 3)."""
    if len(not_utf8.translate(None, _ASCII)) < MIN_EVIDENCE:
        return CP1252
    if mess_ratio(not_utf8.decode(CP1252.codec, CP1252.errors), MESS_THRESHOLD) < MESS_THRESHOLD:
        return CP1252
    best = from_bytes(not_utf8).best()
    if best is None:
        return CP1252
    # Of the encodings that read these bytes alike (Windows-1251 and the Kazakh PTCP154), the Windows one.
    windows = sorted(codec for codec in best.could_be_from_charset if re.fullmatch(r"cp125\d", codec))
    codec = windows[0] if windows else best.encoding
    if not _ascii_compatible(codec):
        return CP1252
    return Encoding(codec, "strict", _label(codec))


def _complete_lines(data: bytes) -> int:
    """How many leading bytes of ``data`` are whole lines: up to its last line end, except that a final
    \r may be the first half of a \r\n (0: no whole line)."""
    return max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1)) + 1


class _LineDecoder:
    """The physical lines of a UTF-8 or legacy-encoded stream, each decoded on its own (rule 2), counting
    the lines read in the legacy encoding, the non-ASCII lines read as UTF-8 and the undecodable ones.

    A block of whole lines that is valid UTF-8 (nearly always the whole file) is decoded at once."""

    def __init__(self, raw: io.RawIOBase, *, bom: bool, legacy: Encoding | None) -> None:
        self._raw = raw
        self._bom = bom
        self._legacy = legacy
        self.legacy_lines = 0
        self.utf8_lines = 0
        self.bad_lines = 0
        # The sum of the three, so that a reader checks one number per record.
        self.noted = 0
        self.bad_reason = ""

    @property
    def legacy(self) -> Encoding:
        return self._legacy or CP1252

    def choose_legacy(self, block: bytes) -> Encoding:
        """The legacy encoding, detected on ``block``'s lines that are not UTF-8 the first time."""
        if self._legacy is None:
            not_utf8 = b"".join(line for line in _BYTE_LINE.findall(block) if not _is_utf8(line))
            self._legacy = detect_legacy_encoding(not_utf8[:SAMPLE_BYTES]) if not_utf8 else CP1252
        return self._legacy

    def decode_legacy(self, line: bytes) -> str:
        legacy = self.legacy
        try:
            text = line.decode(legacy.codec, legacy.errors)
        except UnicodeDecodeError as exc:
            self.bad_lines += 1
            self.noted += 1
            self.bad_reason = (
                f"cannot be decoded as UTF-8 or {legacy.label} (byte 0x{line[exc.start]:02X} at byte {exc.start + 1})"
            )
            return line.decode(legacy.codec, "replace")
        self.legacy_lines += 1
        self.noted += 1
        return text

    def _blocks(self) -> Iterator[bytes]:
        """Blocks of whole lines; the last one may end without a line end."""
        pending: list[bytes] = []
        while chunk := self._raw.read(SAMPLE_BYTES):
            if self._bom:
                chunk, self._bom = chunk.removeprefix(codecs.BOM_UTF8), False
            cut = _complete_lines(chunk)
            if not cut:
                pending.append(chunk)
                continue
            pending.append(chunk[:cut])
            yield b"".join(pending)
            pending = [chunk[cut:]] if cut < len(chunk) else []
        if pending:
            yield b"".join(pending)

    def __iter__(self) -> Iterator[str]:
        for block in self._blocks():
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError:
                self.choose_legacy(block)
                for raw in _BYTE_LINE.findall(block):
                    try:
                        line = raw.decode("utf-8", "surrogatepass")
                    except UnicodeDecodeError:
                        line = self.decode_legacy(raw)
                    else:
                        if not line.isascii():
                            self.utf8_lines += 1
                            self.noted += 1
                    yield line
                continue
            if text.isascii():
                yield from _LINE.findall(text)
            else:
                for line in _LINE.findall(text):
                    if not line.isascii():
                        self.utf8_lines += 1
                        self.noted += 1
                    yield line


class _WideLines:
    """The lines of a UTF-16 or UTF-32 stream: never a legacy or undecodable line (an error ends the file)."""

    legacy_lines = utf8_lines = bad_lines = noted = 0
    bad_reason = ""

    def __init__(self, raw: io.RawIOBase, encoding: Encoding) -> None:
        self._text = io.TextIOWrapper(
            io.BufferedReader(raw, buffer_size=SAMPLE_BYTES),
            encoding=encoding.codec,
            errors=encoding.errors,
            newline="",
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._text)


@dataclass
class _LinesOf:
    """How many rows were read one way, and the first few of their lines."""

    count: int = 0
    lines: list[int] = field(default_factory=list)

    def add(self, line: int) -> None:
        self.count += 1
        if len(self.lines) < SHOWN_LINES:
            self.lines.append(line)

    def describe(self) -> str:
        shown = ", ".join(map(str, self.lines))
        more = f" and {self.count - len(self.lines)} more" if self.count > len(self.lines) else ""
        return f"line{'s' if self.count > 1 else ''} {shown}{more}"


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
        self._raw = _CountingReader(sample, stream)
        wide = _wide_encoding(sample)
        # A decoded copy of the sample for sniffing only; the line reader re-reads it from the prefix.
        if wide is not None:
            self.encoding = wide
            self._lines: _LineDecoder | _WideLines = _WideLines(self._raw, wide)
            try:
                sample_text = codecs.getincrementaldecoder(wide.codec)(wide.errors).decode(sample, final=complete)
            except UnicodeDecodeError as exc:
                raise UnusableFile(f"cannot be decoded as {wide.label} ({exc.reason})") from None
        else:
            bom = sample.startswith(codecs.BOM_UTF8)
            whole = sample[len(codecs.BOM_UTF8) if bom else 0 :]
            whole = whole if complete else whole[: _complete_lines(whole)] or whole
            lines = _LineDecoder(self._raw, bom=bom, legacy=None)
            try:
                sample_text = whole.decode("utf-8", "surrogatepass")
                self.encoding = Encoding("utf-8-sig", "strict", "utf-8 with BOM") if bom else UTF8
            except UnicodeDecodeError:
                self.encoding = lines.choose_legacy(whole)
                sample_text = "".join(
                    line.decode("utf-8", "surrogatepass")
                    if _is_utf8(line)
                    else line.decode(self.encoding.codec, "replace")
                    for line in _BYTE_LINE.findall(whole)
                )
            self._lines = lines
        sample_text = sample_text.lstrip("\ufeff")
        if not sample_text.strip():
            raise UnusableFile("is empty")
        if _looks_binary(sample_text):
            raise UnusableFile("looks binary (many control characters); expected CSV text")

        # The lines of the record being read, so that a record the csv module refuses can still be shown.
        self._record_lines: list[str] = []
        line_source = self._recording(iter(self._lines))
        self._lines_before_header = 0
        first_line = sample_text.split("\n", 1)[0].strip("\r").strip()
        explicit = _excel_separator_hint(first_line)
        if explicit is not None:
            self.delimiter = explicit
            next(line_source, None)
            self._lines_before_header = 1
        else:
            self.delimiter = _sniff_delimiter(sample_text, complete=complete)
        self._reader = csv.reader(line_source, delimiter=self.delimiter, strict=True)
        self._legacy_rows = _LinesOf()
        self._utf8_rows = _LinesOf()
        self.header, self.header_line = self._read_header()

    def _read_header(self) -> tuple[list[str], int]:
        lines = self._lines
        while True:
            line = self._reader.line_num + 1 + self._lines_before_header
            legacy, utf8, bad = lines.legacy_lines, lines.utf8_lines, lines.bad_lines
            try:
                row = next(self._reader)
            except StopIteration:
                raise UnusableFile("is empty (no header row)") from None
            except csv.Error as exc:
                raise UnusableFile(f"line {line}: the header row is not valid CSV ({exc})") from None
            except UnicodeDecodeError as exc:
                raise UnusableFile(f"cannot be decoded as {self.encoding.label} ({exc.reason})") from None
            if any(value.strip() for value in row):
                if lines.bad_lines != bad:
                    raise UnusableFile(f"line {line}: the header row {lines.bad_reason}")
                header = [value.replace("\ufeff", "").strip() for value in row]
                reason = unstorable_reason("".join(header))
                if reason is not None:
                    raise UnusableFile(f"line {line}: the header row {reason}")
                self._count_encoding(line, legacy, utf8)
                return header, line

    def _count_encoding(self, line: int, legacy_before: int, utf8_before: int) -> None:
        if self._lines.legacy_lines != legacy_before:
            self._legacy_rows.add(line)
        elif self._lines.utf8_lines != utf8_before:
            self._utf8_rows.add(line)

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
        lines = self._lines
        noted = legacy = utf8 = bad = -1
        while True:
            line = reader.line_num + 1 + offset
            record_lines.clear()
            if lines.noted != noted:
                noted, legacy, utf8, bad = lines.noted, lines.legacy_lines, lines.utf8_lines, lines.bad_lines
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
                if lines.noted != noted:
                    if lines.bad_lines != bad:
                        yield Record(line, values, lines.bad_reason)
                        continue
                    self._count_encoding(line, legacy, utf8)
                yield Record(line, values)

    def encoding_warnings(self) -> list[str]:
        """What the reader of the import summary should know about how the rows read so far were decoded
        (the header counts as a row): nothing for UTF-8, UTF-16 or UTF-32 files."""
        legacy, utf8 = self._legacy_rows, self._utf8_rows
        if not legacy.count:
            return []
        label = self._lines.legacy.label if isinstance(self._lines, _LineDecoder) else self.encoding.label
        if not utf8.count:
            return [
                f"the file is not UTF-8: {legacy.count} row{'s' if legacy.count > 1 else ''} with accents "
                f"{'were' if legacy.count > 1 else 'was'} read as {label} (detected); if they look wrong, "
                "save the file as UTF-8 and import it again"
            ]
        fewer, kind = (legacy, label) if legacy.count <= utf8.count else (utf8, "UTF-8")
        return [
            f"the file mixes encodings: {utf8.count} row{'s' if utf8.count > 1 else ''} with accents "
            f"{'were' if utf8.count > 1 else 'was'} read as UTF-8 and {legacy.count} as {label}; "
            f"the {kind} ones are at {fewer.describe()}"
        ]

    def close(self) -> None:
        if self._owns_stream:
            self._stream.close()

    def __enter__(self) -> CsvSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _excel_separator_hint(first_line: str) -> str | None:
    """Excel writes ``sep=;`` as the first line of some exports to name the delimiter."""
    if len(first_line) == 5 and first_line[:4].lower() == "sep=" and first_line[4] != '"':
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
