"""Reading real-world CSV files: encodings, delimiters, physical line numbers and unusable files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nurture.leads import csv_source as csv_source_module
from nurture.leads.csv_source import SAMPLE_BYTES, UnusableFile, open_csv

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "import"


def read_all(source) -> tuple[list[str], list[tuple[int, list[str]]]]:
    with open_csv(source) as csv_source:
        return csv_source.header, [(record.line, record.values) for record in csv_source.records()]


ACCENTED = [
    (2, ["chloe@example.com", "Chloé", "Müller", "Café € Co"]),
    (3, ["zoe@example.com", "Zoë", "Ångström", "Smörgås AB"]),
]


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter"),
    [
        ("utf8.csv", "utf-8", ","),
        ("utf8_bom.csv", "utf-8 with BOM", ";"),
        ("utf16le.csv", "utf-16", "\t"),
        ("utf16be.csv", "utf-16", ","),
        ("cp1252.csv", "windows-1252", ";"),
    ],
)
def test_each_encoding_reads_accents_and_the_euro_sign(name, encoding, delimiter):
    with open_csv(FIXTURES / name) as csv_source:
        assert csv_source.encoding.label == encoding
        assert csv_source.delimiter == delimiter
        assert "\ufeff" not in csv_source.header[0]
        records = [(record.line, record.values) for record in csv_source.records()]
    assert records == ACCENTED


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_recognised_by_its_nul_pattern(codec):
    data = "email,name\r\nann@example.com,Anaïs\r\n".encode(codec)
    header, records = read_all(io.BytesIO(data))
    assert header == ["email", "name"]
    assert records == [(2, ["ann@example.com", "Anaïs"])]


def _ascii_rows(count: int) -> bytes:
    return b"".join(b"user%06d@example.com,Plain,Row\r\n" % index for index in range(count))


def test_windows_1252_after_the_sample_is_still_decoded_right(tmp_path):
    # The first 64 KiB are plain ASCII (valid UTF-8); the first Windows-1252 byte comes much later.
    rows = _ascii_rows(3000)
    assert len(rows) > SAMPLE_BYTES
    path = tmp_path / "late.csv"
    path.write_bytes(b"email,first_name,company\r\n" + rows + "late@example.com,Léa,Société €\r\n".encode("cp1252"))
    _, records = read_all(path)
    assert len(records) == 3001
    assert records[0] == (2, ["user000000@example.com", "Plain", "Row"])
    assert records[-1] == (3002, ["late@example.com", "Léa", "Société €"])


def test_a_stray_windows_1252_byte_in_a_utf8_file_keeps_the_utf8_text(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        "email,name\r\nann@example.com,Anaïs\r\n".encode()
        + _ascii_rows(3000)
        + b"bob@example.com,Ren\xe9\r\n"
    )
    _, records = read_all(path)
    assert records[0] == (2, ["ann@example.com", "Anaïs"])
    assert records[-1] == (3003, ["bob@example.com", "René"])


def test_bytes_undefined_in_windows_1252_are_kept_as_latin1():
    _, records = read_all(io.BytesIO(b"email,name\nann@example.com,Ren\xe9\x81\n"))
    assert records == [(2, ["ann@example.com", "René\x81"])]


@pytest.mark.parametrize(
    ("name", "delimiter", "company"),
    [
        ("semicolon.csv", ";", "Dupont, Durand & Fils"),
        ("tab.csv", "\t", "Dupont, Durand; Fils"),
        ("excel_sep.csv", ";", "Acme, Inc"),
    ],
)
def test_delimiters_are_sniffed(name, delimiter, company):
    with open_csv(FIXTURES / name) as csv_source:
        assert csv_source.delimiter == delimiter
        assert csv_source.header == ["email", "first_name", "company"]
        records = list(csv_source.records())
    assert records[0].values == ["ann@example.com", "Ann", company]


def test_excel_separator_line_counts_as_a_physical_line():
    _, records = read_all(FIXTURES / "excel_sep.csv")
    assert [line for line, _ in records] == [3, 4]


def test_pipe_and_single_column_files():
    assert read_all(io.BytesIO(b"email|name\na@example.com|A\n"))[1] == [(2, ["a@example.com", "A"])]
    assert read_all(io.BytesIO(b"email\na@example.com\nb@example.com\n")) == (
        ["email"],
        [(2, ["a@example.com"]), (3, ["b@example.com"])],
    )


def test_embedded_newlines_give_the_physical_starting_line():
    header, records = read_all(FIXTURES / "embedded_newlines.csv")
    assert header == ["email", "first_name", "notes"]
    assert [line for line, _ in records] == [2, 4, 7, 9, 10]
    assert records[0][1][2] == "first line\r\nsecond line"
    assert records[1][1][2] == "one\ntwo\nthree"
    assert records[3][1][1] == 'Dee "the boss"'


def test_blank_lines_are_skipped_but_counted():
    data = b"\r\n\r\nemail,name\r\n\r\na@example.com,A\r\n,\r\n  ,  \r\nb@example.com,B\r\n\r\n"
    with open_csv(io.BytesIO(data)) as csv_source:
        assert csv_source.header_line == 3
        records = [(record.line, record.values) for record in csv_source.records()]
    assert records == [(5, ["a@example.com", "A"]), (8, ["b@example.com", "B"])]


def test_old_mac_line_endings():
    assert read_all(io.BytesIO(b"email,name\ra@example.com,A\rb@example.com,B\r"))[1] == [
        (2, ["a@example.com", "A"]),
        (3, ["b@example.com", "B"]),
    ]


def test_a_record_with_broken_quoting_is_reported_with_its_raw_text_and_reading_goes_on():
    data = b'email,name\na@example.com,"A"x\nb@example.com,B\n'
    with open_csv(io.BytesIO(data)) as csv_source:
        records = list(csv_source.records())
    assert records[0].line == 2
    assert records[0].error is not None and "not valid CSV" in records[0].error
    assert records[0].values == ['a@example.com,"A"x']
    assert (records[1].line, records[1].values, records[1].error) == (3, ["b@example.com", "B"], None)


def test_header_only_file_has_no_records():
    assert read_all(FIXTURES / "header_only.csv") == (["email", "first_name"], [])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.csv", "is empty"),
        ("blank.csv", "is empty"),
        ("binary.csv", "looks binary (NUL byte at offset 8)"),
        ("workbook.xlsx", "is a ZIP archive"),
        ("does-not-exist.csv", "does not exist"),
    ],
)
def test_unusable_files_are_refused_with_a_reason(name, message):
    with pytest.raises(UnusableFile, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_csv(FIXTURES / name)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(UnusableFile, match="is a directory"):
        open_csv(tmp_path)


def test_control_characters_without_nul_are_refused_as_binary():
    with pytest.raises(UnusableFile, match="looks binary"):
        open_csv(io.BytesIO(bytes(range(1, 32)) * 50))


def test_truncated_utf16_fails_as_a_whole_file():
    data = b"\xff\xfe" + "email,name\r\na@example.com,A\r\n".encode("utf-16-le") + b"\x41"
    with pytest.raises(UnusableFile, match="cannot be decoded as utf-16"):
        read_all(io.BytesIO(data))


class NonSeekable(io.RawIOBase):
    """A pipe-like stream: no seek, no size, hands out small chunks."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data.read(min(len(buffer), 4096))
        buffer[: len(chunk)] = chunk
        self.served += len(chunk)
        return len(chunk)


def test_streams_are_read_as_they_go_not_whole():
    data = b"email,name\r\n" + _ascii_rows(40_000)
    stream = NonSeekable(data)
    with open_csv(stream) as csv_source:
        assert csv_source.total_bytes is None
        records = csv_source.records()
        first = next(records)
        assert first.line == 2
        # Only the sample and a buffer or two have been read for the first record of a 1.3 MB stream.
        assert stream.served < 4 * SAMPLE_BYTES < len(data)
        assert sum(1 for _ in records) == 39_999
        assert csv_source.bytes_read == len(data)


def test_a_seekable_stream_reports_its_size():
    data = b"email\na@example.com\n"
    with open_csv(io.BytesIO(data)) as csv_source:
        assert csv_source.total_bytes == len(data)
        list(csv_source.records())
        assert csv_source.bytes_read == len(data)


# --- line by line decoding (issue 9, item 8) ---------------------------------------------------------------


def test_mixed_utf8_and_windows_1252_lines_each_read_as_written():
    data = b"email,name\n" + "a@example.com,Zoë\n".encode() + "b@example.com,René\n".encode("cp1252")
    with open_csv(io.BytesIO(data)) as csv_source:
        assert [record.values[1] for record in csv_source.records()] == ["Zoë", "René"]
        assert csv_source.encoding_warnings() == [
            "the file mixes encodings: 1 row with accents was read as UTF-8 and 1 as windows-1252; "
            "the windows-1252 ones are at line 3"
        ]


def test_a_quoted_value_spanning_lines_of_both_encodings():
    data = b'email,notes\na@example.com,"' + "Zoë\n".encode() + 'René"\n'.encode("cp1252")
    assert read_all(io.BytesIO(data))[1] == [(2, ["a@example.com", "Zoë\nRené"])]


def test_the_warning_names_at_most_ten_lines():
    rows = b"".join(b"u%02d@example.com,Ren\xe9\n" % index for index in range(12))
    data = b"email,name\n" + rows + "z@example.com,Zoë\n".encode()
    with open_csv(io.BytesIO(data)) as csv_source:
        list(csv_source.records())
        assert csv_source.encoding_warnings() == [
            "the file mixes encodings: 1 row with accents was read as UTF-8 and 12 as windows-1252; "
            "the UTF-8 ones are at line 14"
        ]
    data = b"email,name\n" + rows + "".join(f"z{index}@example.com,Zoë\n" for index in range(13)).encode()
    with open_csv(io.BytesIO(data)) as csv_source:
        list(csv_source.records())
        assert csv_source.encoding_warnings()[0].endswith(
            "the windows-1252 ones are at lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 2 more"
        )


@pytest.mark.parametrize(
    ("text", "codec", "label"),
    [
        ("Иван Петров,Ольга Смирнова,Дмитрий Кузнецов", "cp1251", "windows-1251"),
        ("Γιώργος Παπαδόπουλος,Μαρία Νικολάου,Αθήνα", "cp1253", "windows-1253"),
        ("山田太郎,佐藤花子,株式会社テスト", "shift_jis", "cp932"),
    ],
)
def test_a_legacy_encoding_other_than_windows_1252_is_detected_when_the_text_says_so(text, codec, label):
    rows = "".join(f"u{index}@example.com,{text}\n" for index in range(5))
    with open_csv(io.BytesIO(f"email,a,b,c\n{rows}".encode(codec))) as csv_source:
        assert csv_source.encoding.label == label
        assert {tuple(record.values[1:]) for record in csv_source.records()} == {tuple(text.split(","))}


def test_a_few_accents_are_too_little_evidence_and_read_as_windows_1252():
    with open_csv(io.BytesIO("email,name\na@example.com,Ренé\n".encode("cp1251", "replace"))) as csv_source:
        assert csv_source.encoding.label == "windows-1252"


def test_a_plausible_windows_1252_reading_is_kept_even_for_polish():
    # A documented limit: Windows-1250 Polish reads as plausible Windows-1252 text; the warning names it.
    rows = "".join(f"u{index}@example.com,Łukasz Żółć,Zdzisław Wąsik\n" for index in range(5)).encode("cp1250")
    with open_csv(io.BytesIO(b"email,a,b\n" + rows)) as csv_source:
        assert csv_source.encoding.label == "windows-1252"
        list(csv_source.records())
        assert "read as windows-1252 (detected); if they look wrong" in csv_source.encoding_warnings()[0]


def test_a_stray_nul_reaches_the_row_and_many_make_a_binary_file():
    assert read_all(io.BytesIO(b"email,name\na@example.com,A\x00\n"))[1] == [(2, ["a@example.com", "A\x00"])]
    with pytest.raises(UnusableFile, match="looks binary"):
        open_csv(io.BytesIO(b"email,name\na@example.com,A" + b"\x00" * 9 + b"\n"))


def test_a_header_that_cannot_be_stored_refuses_the_file():
    data = b"\xff\xfe" + "email,na\ud800me\r\na@example.com,A\r\n".encode("utf-16-le", "surrogatepass")
    with pytest.raises(UnusableFile, match=r"line 1: the header row contains an unpaired surrogate U\+D800"):
        open_csv(io.BytesIO(data))


def test_a_quote_is_not_an_excel_separator_hint():
    assert read_all(io.BytesIO(b'sep="\nemail,name\na@example.com,A\n'))[0] == ['sep="']


LINE_TEXT = st.text(alphabet=st.sampled_from(list("ab,\"\r\né€")), max_size=40)


@given(text=LINE_TEXT, block=st.integers(1, 9), legacy=st.booleans())
def test_lines_split_like_newline_empty_text_files_whatever_the_block_boundaries(monkeypatch, text, block, legacy):
    monkeypatch.setattr(csv_source_module, "SAMPLE_BYTES", block)
    data = text.encode("cp1252" if legacy else "utf-8")
    expected = list(io.TextIOWrapper(io.BytesIO(data), encoding="cp1252" if legacy else "utf-8", newline=""))
    assert list(csv_source_module._LineDecoder(io.BytesIO(data), bom=False, legacy=None)) == expected
