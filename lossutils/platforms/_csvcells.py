"""A CSV file edited cell by cell: every character the caller does not change stays as it was.

LMS gradebook exports carry columns, rows and formatting that an import must see unchanged
(read-only totals, posting-policy rows, the quoting and line endings of the exporting LMS, a
byte order mark). :class:`CsvCells` parses a file into fields that remember where they are in
the text, and writes the text back with only the replaced fields changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CsvCells", "CsvError"]

_BOM = "\ufeff"
_NEWLINES = "\r\n"


class CsvError(ValueError):
    """The text is not CSV this module can edit safely; the message says where and why."""


@dataclass
class _Field:
    start: int  # offset in the text (after the byte order mark), quotes included
    end: int
    value: str
    quoted: bool


@dataclass
class _Record:
    line: int  # 1-based line number where the record starts, for messages
    fields: list[_Field] = field(default_factory=list)


def _parse(text: str, delimiter: str, limit: int | None = None) -> list[_Record]:
    """Split ``text`` into records of fields with their spans (RFC 4180, any line ending)."""
    records: list[_Record] = []
    i, n, line = 0, len(text), 1
    while i < n and (limit is None or len(records) < limit):
        record = _Record(line)
        while True:
            start = i
            if i < n and text[i] == '"':
                i += 1
                chunks = []
                while True:
                    close = text.find('"', i)
                    if close < 0:
                        raise CsvError(f"line {record.line}: a quoted field is never closed")
                    chunks.append(text[i:close])
                    line += text.count("\n", i, close) + text.count("\r", i, close) - text.count(
                        "\r\n", i, close
                    )
                    if close + 1 < n and text[close + 1] == '"':
                        chunks.append('"')
                        i = close + 2
                        continue
                    i = close + 1
                    break
                if i < n and text[i] != delimiter and text[i] not in _NEWLINES:
                    raise CsvError(
                        f"line {line}: text after the closing quote of a field "
                        f"({text[start:i + 10]!r}...)"
                    )
                record.fields.append(_Field(start, i, "".join(chunks), True))
            else:
                while i < n and text[i] != delimiter and text[i] not in _NEWLINES:
                    i += 1
                record.fields.append(_Field(start, i, text[start:i], False))
            if i < n and text[i] == delimiter:
                i += 1
                continue
            break
        # the record ends at a line ending or at the end of the text
        if text.startswith("\r\n", i):
            i += 2
        elif i < n:
            i += 1
        line += 1
        records.append(record)
    return records


def sniff_delimiter(text: str) -> str:
    """The delimiter (``,``, ``;`` or tab) that splits the first lines into equal, most fields.

    Canvas and Moodle both write ``;`` where the locale's decimal separator is a comma, and
    Moodle can write tabs; Canvas's own importer decides the same way.

    Examples
    --------
    >>> sniff_delimiter('Student;ID;Section;"Quiz 1, retake (12)"\\r\\nAda;1;A;9,5\\r\\n')
    ';'
    >>> sniff_delimiter("a,b\\n1,2\\n")
    ','
    """
    best, best_score = ",", (False, 0)
    for candidate in (",", ";", "\t"):
        try:
            counts = [len(r.fields) for r in _parse(text.lstrip(_BOM), candidate, limit=3)]
        except CsvError:
            continue
        score = (len(set(counts)) == 1, counts[0] if counts else 0)
        if score > best_score:
            best, best_score = candidate, score
    return best


class CsvCells:
    """A parsed CSV text whose fields can be replaced without touching anything else.

    Parameters
    ----------
    text : str
        The whole file, decoded; a leading byte order mark is kept.
    delimiter : str, optional
        Field separator; default: sniffed from the first lines (:func:`sniff_delimiter`).

    Examples
    --------
    >>> cells = CsvCells('"Student","Quiz"\\r\\n"Ada, L.",\\r\\n')
    >>> cells.rows[1]
    ['Ada, L.', '']
    >>> cells.set(1, 1, "9.5")
    >>> cells.render()
    '"Student","Quiz"\\r\\n"Ada, L.",9.5\\r\\n'
    """

    def __init__(self, text: str, delimiter: str | None = None):
        self.bom = text.startswith(_BOM)
        self.text = text[1:] if self.bom else text
        self.delimiter = delimiter or sniff_delimiter(self.text)
        self._records = _parse(self.text, self.delimiter)
        self._new: dict[tuple[int, int], str] = {}

    @property
    def rows(self) -> list[list[str]]:
        """The values of every record (quotes removed), as the file has them."""
        return [[f.value for f in r.fields] for r in self._records]

    def line(self, row: int) -> int:
        """The 1-based line number where record ``row`` starts."""
        return self._records[row].line

    def set(self, row: int, column: int, value: str) -> None:
        """Replace the value of one field; raise IndexError if the record is shorter."""
        old = self._records[row].fields[column]
        needs_quotes = any(c in value for c in (self.delimiter, '"', "\r", "\n"))
        if old.quoted or needs_quotes:
            value = '"' + value.replace('"', '""') + '"'
        self._new[(row, column)] = value

    def render(self) -> str:
        """The text with the replaced fields, and every other character as it was."""
        spans = sorted(
            (self._records[r].fields[c].start, self._records[r].fields[c].end, value)
            for (r, c), value in self._new.items()
        )
        out, last = [_BOM] if self.bom else [], 0
        for start, end, value in spans:
            out.append(self.text[last:start])
            out.append(value)
            last = end
        out.append(self.text[last:])
        return "".join(out)
