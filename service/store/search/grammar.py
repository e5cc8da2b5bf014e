"""The filter language: its grammar (written once, here, and published in EBNF in the
manual), parsed with lark's LALR parser into a small tree of :class:`Node` objects that keep
the column of every field and literal, so that an error names where it is.

Bounds: at most :data:`MAX_LENGTH` characters, :data:`MAX_DEPTH` levels of nesting
(parentheses and ``NOT``) and :data:`MAX_VALUES` values in an ``IN``; past them, and for any
text the grammar does not take, a :class:`QueryError`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from service.store.search.errors import QueryError

MAX_LENGTH = 2_000
MAX_DEPTH = 32
MAX_VALUES = 100

GRAMMAR = r"""
?start: or_expr

?or_expr: and_expr (OR and_expr)*
?and_expr: not_expr (AND not_expr)*
?not_expr: NOT not_expr                             -> negation
         | atom
?atom: predicate
     | "(" or_expr ")"                              -> group

?predicate: FIELD OPERATOR value                    -> compare
          | FIELD [NOT] IN "(" value ("," value)* ")"  -> membership
          | FIELD [NOT] LIKE value                  -> like
          | FIELD IS [NOT] NULL                     -> nullness

?value: STRING | NUMBER | TIMESTAMP | TRUE | FALSE | list
list: "[" [NUMBER ("," NUMBER)*] "]"

OR.2: /or\b/i
AND.2: /and\b/i
NOT.2: /not\b/i
IN.2: /in\b/i
LIKE.2: /like\b/i
IS.2: /is\b/i
NULL.2: /null\b/i
TRUE.2: /true\b/i
FALSE.2: /false\b/i
OPERATOR: "<=" | ">=" | "!=" | "<>" | "=" | "<" | ">"
FIELD: /[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_.\-]*)?/
STRING: /'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"/s
TIMESTAMP.3: /\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?/ _ZONE
_ZONE: /(?:Z|[+-]\d{2}:?\d{2})?(?![\w.:-])/
NUMBER: /[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/

%import common.WS
%ignore WS
"""

# What each terminal is, in the words of an error message.
WORDS = {
    "FIELD": "a field",
    "OPERATOR": "an operator (=, !=, <, <=, >, >=, IN, NOT IN, LIKE, IS NULL)",
    "STRING": "a value", "NUMBER": "a value", "TIMESTAMP": "a value", "TRUE": "a value",
    "FALSE": "a value", "LSQB": "a value",
    "AND": "AND", "OR": "OR", "NOT": "NOT", "IN": "IN", "LIKE": "LIKE", "IS": "IS",
    "NULL": "NULL", "LPAR": "'('", "RPAR": "')'", "COMMA": "','", "RSQB": "']'",
    "$END": "the end",
}
# When an operator is expected, NOT / IN / LIKE / IS are part of that one choice.
OPERATOR_WORDS = {"NOT", "IN", "LIKE", "IS"}

LiteralKind = Literal["string", "number", "time", "boolean", "list"]


@dataclass(frozen=True)
class Value:
    """A literal: its kind, its Python value, its text and its column."""

    kind: LiteralKind
    value: Any
    text: str
    column: int


@dataclass(frozen=True)
class Compare:
    """``field op value``."""

    field: str
    column: int
    op: str
    value: Value


@dataclass(frozen=True)
class Member:
    """``field [NOT] IN (values)``."""

    field: str
    column: int
    values: tuple[Value, ...]
    negated: bool


@dataclass(frozen=True)
class Like:
    """``field [NOT] LIKE pattern``."""

    field: str
    column: int
    pattern: Value
    negated: bool


@dataclass(frozen=True)
class IsNull:
    """``field IS [NOT] NULL``."""

    field: str
    column: int
    negated: bool


@dataclass(frozen=True)
class Not:
    """``NOT operand``."""

    operand: Node


@dataclass(frozen=True)
class All:
    """``a AND b AND ...``."""

    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Any_:
    """``a OR b OR ...``."""

    operands: tuple[Node, ...]


Node = Compare | Member | Like | IsNull | Not | All | Any_


@functools.cache
def parser() -> Lark:
    """The filter language's LALR parser (built once)."""
    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _unquote(text: str) -> str:
    """A string literal's value: its quote doubled (as SQL writes it), ``\\\\``, ``\\'`` and
    ``\\"`` unescaped; any other backslash kept (``LIKE`` reads ``\\%`` and ``\\_``)."""
    quote = text[0]
    out, chars = [], iter(text[1:-1].replace(quote * 2, "\\" + quote))
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            out.append(following if following in "\\'\"" else "\\" + following)
        else:
            out.append(char)
    return "".join(out)


def _value(node: Token | Tree[Token], param: str) -> Value:
    if isinstance(node, Tree):  # a list
        items = [item for item in node.children if item is not None]
        numbers = [_value(item, param).value for item in items]
        column = node.meta.column if not node.meta.empty else 0
        return Value("list", numbers, "[" + ", ".join(str(i) for i in items) + "]", column)
    text, column = str(node), node.column or 0
    if node.type == "STRING":
        return Value("string", _unquote(text), text, column)
    if node.type == "NUMBER":
        number = float(text)
        if not math.isfinite(number):
            raise QueryError(param, column, f"the number {text} at column {column} is too large")
        is_int = number.is_integer() and abs(number) < 2**63 and not any(
            c in text for c in ".eE")
        return Value("number", int(text) if is_int else number, text, column)
    if node.type == "TIMESTAMP":
        return Value("time", text, text, column)
    return Value("boolean", node.type == "TRUE", text, column)


def _predicate(tree: Tree[Any], param: str) -> Node:
    field = tree.children[0]
    assert isinstance(field, Token)
    name, column = str(field), field.column or 0
    if tree.data == "compare":
        return Compare(name, column, str(tree.children[1]), _value(tree.children[2], param))
    if tree.data == "membership":
        negated, values = tree.children[1] is not None, tree.children[3:]
        if len(values) > MAX_VALUES:
            raise QueryError(param, column, f"{len(values)} values in the IN of '{name}' at "
                                            f"column {column}; at most {MAX_VALUES}")
        return Member(name, column, tuple(_value(v, param) for v in values), negated)
    if tree.data == "like":
        return Like(name, column, _value(tree.children[3], param), tree.children[1] is not None)
    return IsNull(name, column, tree.children[2] is not None)


def _check_depth(tree: Tree[Any], param: str) -> None:
    """A :class:`QueryError` at the level past :data:`MAX_DEPTH` (walked without recursion:
    a tree this deep would overflow the stack of a recursive walk)."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in ("negation", "group"):
            depth += 1
            if depth > MAX_DEPTH:
                column = node.meta.column if not node.meta.empty else 0
                raise QueryError(param, column, f"more than {MAX_DEPTH} levels of nesting "
                                                f"at column {column}")
        stack.extend((child, depth) for child in node.children if isinstance(child, Tree))


def _node(tree: Tree[Any], param: str) -> Node:
    if tree.data == "or_expr":
        return Any_(tuple(_node(c, param) for c in tree.children if isinstance(c, Tree)))
    if tree.data == "and_expr":
        return All(tuple(_node(c, param) for c in tree.children if isinstance(c, Tree)))
    if tree.data == "negation":
        return Not(_node(tree.children[1], param))
    if tree.data == "group":
        return _node(tree.children[0], param)
    return _predicate(tree, param)


def _before(text: str, position: int) -> str | None:
    """The last token that ends at or before ``position`` (an index into ``text``), quoted
    (a string literal as written)."""
    last = None
    try:
        for token in parser().lex(text):
            if token.end_pos is None or token.end_pos > position:
                break
            last = str(token) if token.type == "STRING" else f"'{token}'"
    except UnexpectedInput:
        pass
    return last


def _accepted(prefix: str) -> set[str]:
    """The terminals the parser takes after ``prefix`` (exact, unlike the lexer's view of an
    LALR state, which merges the contexts of a value); empty when the prefix does not lex."""
    try:
        interactive = parser().parse_interactive(prefix)
        interactive.exhaust_lexer()
        return set(interactive.accepts())
    except UnexpectedInput:
        return set()


def _expected(names: set[str]) -> str:
    words: list[str] = []
    if "OPERATOR" in names:
        names = names - OPERATOR_WORDS
    for name in sorted(names, key=lambda n: list(WORDS).index(n) if n in WORDS else 99):
        word = WORDS.get(name, name)
        if word not in words:
            words.append(word)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_error(text: str, error: UnexpectedInput, param: str) -> QueryError:
    found: str | None = None
    if isinstance(error, UnexpectedEOF) or (
            isinstance(error, UnexpectedToken) and error.token.type == "$END"):
        position = len(text.rstrip())
        expected = set(error.expected)
    elif isinstance(error, UnexpectedToken):
        position, found = error.token.start_pos or 0, str(error.token)
        expected = set(error.expected)
    else:
        assert isinstance(error, UnexpectedCharacters)
        position = int(error.pos_in_stream or 0)
        found = text[position]
        expected = set(error.allowed or ())
    expected = _accepted(text[:position]) or expected
    column = position + 1
    previous = _before(text, position)
    after = f" after {previous}" if previous else ""
    message = f"expected {_expected(expected)}{after} at column {column}"
    if found is not None:
        shown = found if len(found) <= 20 else found[:20] + "…"
        message += f", found '{shown}'"
    return QueryError(param, column, message)


def parse(text: str, param: str = "filter") -> Node:
    """The tree of a filter expression; a :class:`QueryError` naming the column and what was
    expected there when the text is not one (or is past the bounds)."""
    if len(text) > MAX_LENGTH:
        raise QueryError(param, MAX_LENGTH + 1, f"the expression is {len(text)} characters "
                                                f"long; at most {MAX_LENGTH}")
    try:
        tree = parser().parse(text)
    except UnexpectedInput as error:
        raise _syntax_error(text, error, param) from None
    if isinstance(tree, Token):  # cannot happen: every sentence is a predicate or more
        raise QueryError(param, 1, "expected a field at column 1")
    _check_depth(tree, param)
    return _node(tree, param)
