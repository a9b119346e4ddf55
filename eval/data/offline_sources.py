"""Parsers for the installable public sources behind the bundled data (see DATASHEET.md).

Each function returns plain, deterministically ordered Python records; nothing here samples or
writes. Sources: chatterbot-corpus (PyPI), CPython's standard library, and the Debian packages
sword-text-kjv, sword-text-sparv, sword-dict-naves (exported with `mod2imp`) and wordnet-base.
"""

from __future__ import annotations

import ast
import html
import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# --- chatterbot-corpus -------------------------------------------------------------------------


@dataclass(frozen=True)
class QAPair:
    lang: str
    topic: str  # the YAML file stem, e.g. "science"
    index: int  # position inside the file (parallel translations share it)
    question: str
    answer: str
    turn: int = 0  # 0: the conversation's opening message


def chatterbot_dir() -> Path:
    import chatterbot_corpus

    return Path(chatterbot_corpus.__file__).resolve().parent / "data"


def chatterbot_pairs(folder: str, *, all_turns: bool = False) -> list[QAPair]:
    """Message → reply pairs of one language folder, in file then position order.

    By default only the first turn (question → answer); `all_turns` adds every later message → reply pair.
    """
    out = []
    for path in sorted((chatterbot_dir() / folder).glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for i, conv in enumerate(data.get("conversations") or []):
            if not isinstance(conv, list) or len(conv) < 2:
                continue
            last = len(conv) - 1 if all_turns else 1
            for turn in range(last):
                q, a = conv[turn], conv[turn + 1]
                if isinstance(q, str) and isinstance(a, str) and q.strip() and a.strip():
                    out.append(QAPair(folder, path.stem, i, " ".join(q.split()), " ".join(a.split()), turn))
    return out


def chatterbot_topic_sizes(folder: str) -> dict[str, int]:
    """Number of conversations per topic file (to find files that are parallel translations)."""
    sizes = {}
    for path in sorted((chatterbot_dir() / folder).glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        sizes[path.stem] = len(data.get("conversations") or [])
    return sizes


# --- Python standard library ------------------------------------------------------------------


@dataclass(frozen=True)
class CodeUnit:
    module: str
    qualname: str
    summary: str  # first paragraph of the docstring
    code: str  # the definition without its docstring


_SKIP_STDLIB = ("test", "tests", "idlelib", "lib2to3", "site-packages", "tkinter", "turtledemo", "ensurepip")


_LINE = re.compile(r"(.*?(?:\r\n|\n|\r|$))")


def _source_lines(source: str) -> list[str]:
    """Lines with their endings, split as the Python parser does (what `ast.get_source_segment` uses)."""
    return [m[0] for m in _LINE.finditer(source)]


def _segment(lines: list[str], node: ast.AST) -> str | None:
    """`ast.get_source_segment` over lines split once per file (it re-splits the whole file on every call)."""
    end_lineno, end_col = getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None)
    if end_lineno is None or end_col is None:
        return None
    first, last, col = node.lineno - 1, end_lineno - 1, node.col_offset
    if first == last:
        return lines[first].encode()[col:end_col].decode()
    head = lines[first].encode()[col:].decode()
    tail = lines[last].encode()[:end_col].decode()
    return "".join([head, *lines[first + 1 : last], tail])


def _strip_docstring(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, source: list[str]) -> str | None:
    segment = _segment(source, node)
    if segment is None:
        return None
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        doc = _segment(source, body[0])
        if doc:
            segment = segment.replace(doc, "", 1)
    lines = [line for line in segment.splitlines() if line.strip()]
    return "\n".join(lines)


def stdlib_code_units() -> list[CodeUnit]:
    """Public functions and classes with a docstring, parsed (never imported) from the stdlib sources."""
    root = Path(sysconfig.get_paths()["stdlib"])
    units = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in _SKIP_STDLIB or part.startswith("_") for part in rel.parts[:-1]) or rel.name.startswith("_"):
            continue
        module = ".".join(rel.with_suffix("").parts)
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
            lines = _source_lines(source)
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in tree.body:
            members: list[tuple[str, ast.AST]] = [(node.name, node)] if hasattr(node, "name") else []
            if isinstance(node, ast.ClassDef):
                members += [
                    (f"{node.name}.{m.name}", m)
                    for m in node.body
                    if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                ]
            for qualname, member in members:
                if not isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    continue
                if any(part.startswith("_") for part in qualname.split(".")):
                    continue
                doc = ast.get_docstring(member)
                if not doc:
                    continue
                summary = " ".join(doc.strip().split("\n\n")[0].split())
                code = _strip_docstring(member, lines)
                if code and len(summary.split()) >= 4 and len(code.split()) >= 8:
                    units.append(CodeUnit(module, qualname, summary, code))
    return units


# --- SWORD modules (KJV, Reina-Valera 1909, Nave's Topical Bible) -----------------------------

# OSIS book abbreviations in canonical (KJV) order, as used by Nave's osisRef attributes.
OSIS_BOOKS = [
    "Gen",
    "Exod",
    "Lev",
    "Num",
    "Deut",
    "Josh",
    "Judg",
    "Ruth",
    "1Sam",
    "2Sam",
    "1Kgs",
    "2Kgs",
    "1Chr",
    "2Chr",
    "Ezra",
    "Neh",
    "Esth",
    "Job",
    "Ps",
    "Prov",
    "Eccl",
    "Song",
    "Isa",
    "Jer",
    "Lam",
    "Ezek",
    "Dan",
    "Hos",
    "Joel",
    "Amos",
    "Obad",
    "Jonah",
    "Mic",
    "Nah",
    "Hab",
    "Zeph",
    "Hag",
    "Zech",
    "Mal",
    "Matt",
    "Mark",
    "Luke",
    "John",
    "Acts",
    "Rom",
    "1Cor",
    "2Cor",
    "Gal",
    "Eph",
    "Phil",
    "Col",
    "1Thess",
    "2Thess",
    "1Tim",
    "2Tim",
    "Titus",
    "Phlm",
    "Heb",
    "Jas",
    "1Pet",
    "2Pet",
    "1John",
    "2John",
    "3John",
    "Jude",
    "Rev",
]


def export_sword(module: str) -> str:
    """The module's entries as `mod2imp` prints them (`$$$key` lines followed by OSIS/TEI markup)."""
    exe = shutil.which("mod2imp")
    if exe is None:
        raise SystemExit("mod2imp not found: apt-get install --no-install-recommends libsword-utils")
    result = subprocess.run([exe, module], check=True, capture_output=True)
    return result.stdout.decode("utf-8")


def _imp_entries(text: str) -> list[tuple[str, str]]:
    entries = []
    for chunk in text.split("$$$")[1:]:
        key, _, body = chunk.partition("\n")
        entries.append((key.strip(), body))
    return entries


_DROP_WITH_CONTENT = re.compile(r"<(note|title)\b[^>]*>.*?</\1>", re.S)
_TAG = re.compile(r"<[^>]+>")


def clean_osis(markup: str) -> str:
    """Verse text without footnotes, headings and tags."""
    text = _DROP_WITH_CONTENT.sub(" ", markup)
    text = _TAG.sub("", text)
    return " ".join(html.unescape(text).replace("¶", " ").split())


def bible_verses(module: str) -> dict[str, str]:
    """OSIS id ("Gen.1.1") → verse text, in canonical order (dicts keep insertion order)."""
    verses: dict[str, str] = {}
    book_index = -1
    current_book = None
    for key, body in _imp_entries(export_sword(module)):
        m = re.match(r"^(.+) (\d+):(\d+)$", key)
        if not m:
            continue
        book, chapter, verse = m.group(1), int(m.group(2)), int(m.group(3))
        if book != current_book:
            current_book = book
            book_index += 1
        if chapter == 0 or verse == 0:
            continue
        text = clean_osis(body)
        if text:
            verses[f"{OSIS_BOOKS[book_index]}.{chapter}.{verse}"] = text
    if book_index != len(OSIS_BOOKS) - 1:
        raise SystemExit(f"{module}: expected {len(OSIS_BOOKS)} books, found {book_index + 1}")
    return verses


@dataclass
class NaveQuery:
    topic: str
    subtopic: str
    verses: list[str] = field(default_factory=list)  # OSIS ids, in order, unique

    @property
    def text(self) -> str:
        return f"{self.topic}: {self.subtopic}" if self.subtopic else self.topic


def _pretty(label: str, *, topic: bool) -> str:
    label = " ".join(html.unescape(label).split()).strip(" ,;:.-→")
    if label.isupper():
        label = label.title() if topic else label.lower()
    return label


def _expand(ref: str, order: dict[str, int], ids: list[str], max_span: int) -> list[str]:
    """`Gen.1.1` or `Gen.1.1-Gen.1.5` → verse ids; chapter-only refs and long spans are skipped."""
    start, _, end = ref.partition("-")
    if start.count(".") != 2 or (end and end.count(".") != 2):
        return []
    if start not in order or (end and end not in order):
        return []
    a, b = order[start], order[end] if end else order[start]
    if b < a or b - a + 1 > max_span:
        return []
    return ids[a : b + 1]


def nave_queries(verse_ids: list[str], max_span: int = 12) -> list[NaveQuery]:
    """Topic/subtopic queries with the KJV verses Nave's lists under them (the judgements)."""
    order = {v: i for i, v in enumerate(verse_ids)}
    out = []
    for key, body in _imp_entries(export_sword("Nave")):
        topic = _pretty(key, topic=True)
        inner = re.sub(r"</?(entryFree|def)\b[^>]*>", "", body)
        for segment in re.split(r"<lb\s*/>", inner):
            label_part = re.split(r"<ref\b|<list\b", segment, maxsplit=1)[0]
            subtopic = _pretty(_TAG.sub("", label_part), topic=False)
            if subtopic.lower().startswith("see "):
                continue
            verses: list[str] = []
            for ref in re.findall(r'osisRef="([^"]+)"', segment):
                for v in _expand(ref, order, verse_ids, max_span):
                    if v not in verses:
                        verses.append(v)
            if verses:
                out.append(NaveQuery(topic, subtopic, verses))
    return out


# --- WordNet -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Synset:
    offset: str
    pos: str
    lemmas: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]


def wordnet_synsets(folder: str = "/usr/share/wordnet") -> list[Synset]:
    """All synsets of the four parts of speech, in file order."""
    out = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = Path(folder) / f"data.{pos}"
        if not path.is_file():
            raise SystemExit(f"{path} not found: apt-get install --no-install-recommends wordnet-base")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue
            head, gloss = line.split(" | ", 1)
            parts = head.split()
            count = int(parts[3], 16)
            lemmas = tuple(re.sub(r"\(.*\)$", "", w).replace("_", " ") for w in parts[4 : 4 + 2 * count : 2])
            pieces = [p.strip() for p in gloss.strip().split(";")]
            definition = "; ".join(p for p in pieces if p and not p.startswith('"'))
            examples = tuple(p.strip('"') for p in pieces if p.startswith('"'))
            if definition:
                out.append(Synset(f"{pos[0]}{parts[0]}", pos, lemmas, definition, examples))
    return out
