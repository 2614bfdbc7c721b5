"""Secret-pattern rules (data in ``rules.toml``) and the engine that applies them.

Two engines give the same result: :func:`redact_text` (Python ``re``, one string) and
:func:`redact_array` (RE2 through ``pyarrow.compute.replace_substring_regex``, vectorised).
Rules apply in file order, one global replace each, and the whole rule list is repeated
until nothing changes (at most :data:`MAX_PASSES` times), so the result is idempotent.

The secret part of a match becomes ``[REDACTED:pattern:<rule name>]``; for a rule with a
``secret_group`` the other capture groups are kept (for example ``--password=``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telelake._lazy import lazy

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
    import re2
else:
    pa = lazy("pyarrow")
    pc = lazy("pyarrow.compute")
    re2 = lazy("re2")


__all__ = [
    "DEFAULT_RULES_PATH",
    "MAX_PASSES",
    "Example",
    "Rule",
    "RuleError",
    "any_match",
    "hash_marker",
    "load_rules",
    "pattern_marker",
    "patterns_of",
    "redact_array",
    "redact_text",
]

DEFAULT_RULES_PATH = Path(__file__).with_name("rules.toml")
# Passes run to a fixed point: a rule that skips arguments (`mysql ... -p<secret>`) can
# find the next secret of a line only once the one before it is a marker, one per pass
# (hypothesis found a line with five). A pass that changes anything turns a secret into a
# marker, which no rule matches, so this bound is only a guard.
MAX_PASSES = 64

_RULE_KEYS = frozenset(
    {"name", "pattern", "prefilter", "secret_group", "examples", "negatives", "description"}
)
_EXAMPLE_KEYS = frozenset({"text", "secret"})
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
# Constructs Python accepts but RE2 refuses (checked again by compiling in RE2 below).
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\(\?P=|\\[1-9]|\\[bBZ]")


class RuleError(ValueError):
    """The rules file is malformed; the message names the rule."""


@dataclass(frozen=True)
class Example:
    """A string that must be redacted, and the secret part that must disappear."""

    text: str
    secret: str


@dataclass(frozen=True)
class Rule:
    """One secret pattern."""

    name: str
    pattern: str
    secret_group: int | None
    examples: tuple[Example, ...]
    negatives: tuple[str, ...]
    regex: re.Pattern[str]
    # Matches wherever `pattern` does (more often is fine): what the one-scan prefilter
    # looks for. A rule that skips a command's arguments (`curl ... -u user:pw`) names
    # just the command here, so the all-rules scan keeps a small RE2 automaton.
    prefilter: str | None = None

    @functools.cached_property
    def scan_pattern(self) -> str:
        """The pattern the all-rules prefilter scan uses for this rule."""
        return self.prefilter or self.pattern

    @property
    def marker(self) -> str:
        return pattern_marker(self.name)

    @functools.cached_property
    def python_template(self) -> str:
        """The replacement for Python's `re` (made once: it runs for every hit)."""
        return self.template(r"\g<{}>")

    def template(self, backref: str) -> str:
        """Replacement with ``backref`` formatting a group number (``\\g<{}>`` or ``\\{}``)."""
        if self.secret_group is None:
            return self.marker
        parts: list[str] = []
        for group in range(1, self.regex.groups + 1):
            parts.append(self.marker if group == self.secret_group else backref.format(group))
        return "".join(parts)


def pattern_marker(name: str) -> str:
    """The marker that replaces a secret found by rule ``name``."""
    return f"[REDACTED:pattern:{name}]"


def hash_marker(value: str, key: bytes) -> str:
    """``[REDACTED:hash:<first 12 hex of HMAC-SHA256(key, value)>]``."""
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"[REDACTED:hash:{digest[:12]}]"


def _fail(index: int, name: object, message: str) -> RuleError:
    label = f"rule {name!r}" if isinstance(name, str) else f"rule #{index + 1}"
    return RuleError(f"{label}: {message}")


def _check_re2(pattern: str) -> str | None:
    try:
        pc.replace_substring_regex(pa.array([""], pa.string()), pattern, "")
    except pa.ArrowInvalid as exc:
        return str(exc)
    return None


def _compile(index: int, name: str, key: str, text: str) -> re.Pattern[str]:
    """`text` compiled, checked to work the same in RE2 and never to match nothing."""
    try:
        regex = re.compile(text)
    except re.error as exc:
        raise _fail(index, name, f"{key} does not compile: {exc}") from exc
    if _NOT_RE2.search(text):
        raise _fail(index, name, f"{key} uses lookaround, a backreference or \\b/\\B/\\Z")
    re2_error = _check_re2(text)
    if re2_error is not None:
        raise _fail(index, name, f"{key} does not compile in RE2: {re2_error}")
    if regex.match("") is not None:
        raise _fail(index, name, f"{key} matches the empty string")
    return regex


def _parse_rule(index: int, raw: object, seen: set[str]) -> Rule:
    if not isinstance(raw, dict):
        raise _fail(index, None, "must be a table")
    name = raw.get("name")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise _fail(index, name, f"unknown key(s) {', '.join(unknown)}")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise _fail(index, name, "'name' must be a lower_snake string")
    if name in seen:
        raise _fail(index, name, "duplicate rule name")
    pattern, prefilter = raw.get("pattern"), raw.get("prefilter")
    if not isinstance(pattern, str) or not pattern:
        raise _fail(index, name, "'pattern' must be a non-empty string")
    if prefilter is not None and (not isinstance(prefilter, str) or not prefilter):
        raise _fail(index, name, "'prefilter' must be a non-empty string")
    regex = _compile(index, name, "pattern", pattern)
    if prefilter is not None:
        _compile(index, name, "prefilter", prefilter)
    if regex.groups > 9:
        raise _fail(index, name, "at most 9 capture groups (RE2 replacements use \\1..\\9)")
    secret_group = raw.get("secret_group")
    if secret_group is not None and (
        not isinstance(secret_group, int)
        or isinstance(secret_group, bool)
        or not 1 <= secret_group <= regex.groups
    ):
        raise _fail(index, name, f"'secret_group' must be a group number 1..{regex.groups}")
    examples = _parse_examples(index, name, raw.get("examples", []))
    negatives = raw.get("negatives", [])
    if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
        raise _fail(index, name, "'negatives' must be a list of strings")
    rule = Rule(name, pattern, secret_group, examples, tuple(negatives), regex, prefilter)
    if prefilter is not None:
        for example in examples:
            if not re.search(prefilter, example.text):
                raise _fail(index, name, f"prefilter misses example {example.text!r}")
    if secret_group is not None:
        for example in examples:
            for match in regex.finditer(example.text):
                joined = "".join(g or "" for g in match.groups())
                if joined != match.group(0):
                    raise _fail(
                        index, name, "with secret_group the capture groups must cover the match"
                    )
    return rule


def _parse_examples(index: int, name: str, raw: object) -> tuple[Example, ...]:
    if not isinstance(raw, list):
        raise _fail(index, name, "'examples' must be a list")
    out: list[Example] = []
    for item in raw:
        if not isinstance(item, dict):
            raise _fail(index, name, "each example must be a table {text, secret}")
        unknown = sorted(set(item) - _EXAMPLE_KEYS)
        if unknown:
            raise _fail(index, name, f"unknown example key(s) {', '.join(unknown)}")
        text, secret = item.get("text"), item.get("secret")
        if not isinstance(text, str) or not isinstance(secret, str) or not secret:
            raise _fail(index, name, "example 'text' and 'secret' must be strings")
        if secret not in text:
            raise _fail(index, name, f"example secret {secret!r} is not in its text")
        out.append(Example(text, secret))
    return tuple(out)


def load_rules(path: Path | str | None = None) -> list[Rule]:
    """Read and validate a rules file (default: the packaged ``rules.toml``)."""
    source = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        data: dict[str, Any] = tomllib.loads(source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"{source}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"rules"})
    if unknown:
        raise RuleError(f"{source}: unknown top-level key(s) {', '.join(unknown)}")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RuleError(f"{source}: expected a non-empty [[rules]] list")
    seen: set[str] = set()
    rules: list[Rule] = []
    for index, raw in enumerate(raw_rules):
        rule = _parse_rule(index, raw, seen)
        seen.add(rule.name)
        rules.append(rule)
    return rules


def _alternation(patterns: Iterable[str]) -> str:
    """One pattern matching wherever some rule matches: every rule as an alternation."""
    return "|".join(f"(?:{p})" for p in patterns)


ANY_RULE_MAX_MEM = 64 << 20


@functools.lru_cache(maxsize=8)
def _any_rule(patterns: tuple[str, ...], lines: bool = False) -> Any:
    # RE2 (google-re2) scans once for all rules together: about 6 µs for a 250-character
    # string where Python's backtracking `re` takes 380 µs on the same alternation.
    # Keyed by the patterns: strings hash once, whole rules would hash on every call.
    # With `lines`, `^` and `$` also match at each line break of a joined text.
    # It only answers "is there a match": without captures RE2 skips the submatch work
    # (the rules have ~40 groups), and callers pass UTF-8 bytes, which skips the
    # wrapper's offset mapping. Both halve the time of the usual "no" for a short text.
    options = re2.Options()
    options.never_capture = True
    # RE2's default 8 MB is too little for the DFA of ~130 rules: it would fall back to
    # its NFA, about 100 times slower. The memory is spent only as states are visited.
    options.max_mem = ANY_RULE_MAX_MEM
    # Anchored at the start behind a lazy `.*?`, a match's start is known: RE2 then needs
    # no backward pass to place it, five times faster on a text that holds a secret.
    # Callers use `.match()`.
    pattern = ("(?m)" if lines else "") + "(?s:.*?)(?:" + _alternation(patterns) + ")"
    return re2.compile(pattern, options)


# Arrow compiles a pattern on every call: about 3 ms for the all-rules alternation, which
# is most of the cost of redacting a small batch. Up to this many strings, one RE2 scan
# of them joined by newlines (compiled once) answers the usual "nothing to redact"
# first; beyond it Arrow's per-string scan is faster than the join.
JOINED_SCAN_MAX = 20_000
# Up to this many strings that may hold something, :func:`redact_array` runs the rules
# on each in Python: Arrow would compile every rule (~130), twice or more.
TEXT_PATH_MAX = 2_000


def may_match(arr: pa.Array, patterns: tuple[str, ...]) -> bool:
    """False only when no rule matches any string of `arr` (see :func:`any_match`)."""
    return any_match([v for v in arr.to_pylist() if v is not None], patterns)


def any_match(texts: Sequence[str], patterns: tuple[str, ...]) -> bool:
    """False only when no rule matches any of `texts`: one RE2 scan of them joined.

    A rule matching a string alone matches the same characters in the joined text:
    the newline around each string reads like a text edge to `^`/`$` (multi-line) and
    to `\b`. Matches across a newline can only add hits, never hide one; a hit sends
    the caller to the exact per-string path.
    """
    if not texts:
        return False
    try:
        joined = "\n".join(texts).encode("utf-8")
        return _any_rule(patterns, lines=True).match(joined) is not None
    except UnicodeError:  # a lone surrogate RE2 cannot encode: assume a hit
        return True


_PATTERNS: dict[int, tuple[Sequence[Rule], tuple[str, ...]]] = {}


def patterns_of(rules: Sequence[Rule]) -> tuple[str, ...]:
    """The rules' prefilter patterns (:attr:`Rule.scan_pattern`): a string none of them
    matches is one no rule changes. Remembered for a tuple of rules (it cannot change)."""
    hit = _PATTERNS.get(id(rules))
    if hit is not None and hit[0] is rules:
        return hit[1]
    patterns = tuple(rule.scan_pattern for rule in rules)
    if isinstance(rules, tuple):
        if len(_PATTERNS) >= 64:
            _PATTERNS.clear()
        _PATTERNS[id(rules)] = (rules, patterns)  # holding `rules` keeps its id unique
    return patterns


def redact_text(text: str, rules: Sequence[Rule]) -> tuple[str, list[str]]:
    """Redact ``text``; return it with the names of the rules that fired (in rule order)."""
    if not _may_hold(text, patterns_of(rules)):
        return text, []  # the usual case, in one scan: no rule matches anywhere
    return _apply_rules(text, rules)


def _may_hold(text: str, patterns: tuple[str, ...]) -> bool:
    """False only when no pattern matches `text`: one RE2 scan, compiled once."""
    try:
        return _any_rule(patterns).match(text.encode("utf-8")) is not None
    except UnicodeError:  # a lone surrogate RE2 cannot encode: assume a hit
        return True


def _apply_rules(text: str, rules: Sequence[Rule]) -> tuple[str, list[str]]:
    """The rules in order, pass after pass until nothing changes (Python's `re`)."""
    fired: set[str] = set()
    for _ in range(MAX_PASSES):
        before = text
        for rule in rules:
            if rule.regex.search(text) is None:  # most rules: cheaper than subn
                continue
            text, count = rule.regex.subn(rule.python_template, text)
            if count:
                fired.add(rule.name)
        if text == before:
            break
    return text, [rule.name for rule in rules if rule.name in fired]


def redact_array(arr: pa.Array, rules: Sequence[Rule]) -> pa.Array:
    """Vectorised :func:`redact_text` over a string array; nulls stay null.

    First the strings that any rule may match are found (a handful in real telemetry,
    and none once redacted: markers never match): for up to :data:`JOINED_SCAN_MAX`
    strings by the compiled-once RE2 check, string by string after one scan of them
    all; beyond, by Arrow's RE2 with every rule as an alternation. Up to
    :data:`TEXT_PATH_MAX` of them go through the rules in Python's `re`, string by
    string; more, through Arrow, rule by rule and pass after pass. A string no rule
    matches is one every pass would leave alone, so the result is :func:`redact_text`'s.
    """
    if not rules or len(arr) == 0:
        return arr
    patterns = patterns_of(rules)
    if len(arr) <= JOINED_SCAN_MAX:
        if not may_match(arr, patterns):
            return arr
        # Arrow would compile the ~130-rule alternation on every call (about 0.1 s).
        flags = [v is not None and _may_hold(v, patterns) for v in arr.to_pylist()]
        hits = pa.array(flags, pa.bool_())
    else:
        hits = pc.fill_null(pc.match_substring_regex(arr, _alternation(patterns)), False)
    if not pc.any(hits).as_py():
        return arr
    found = arr.filter(hits)
    if len(found) <= TEXT_PATH_MAX:
        texts = [_apply_rules(v, rules)[0] for v in found.to_pylist()]
        return pc.replace_with_mask(arr, hits, pa.array(texts, arr.type))
    combined = _alternation(patterns)  # the prefilters: a superset of the matches
    for _ in range(MAX_PASSES):
        before = found
        for rule in rules:
            found = pc.replace_substring_regex(found, rule.pattern, rule.template(r"\{}"))
        # A string a pass left unchanged is a fixed point; one that changed and no rule
        # matches any more is one too. Only a changed string that still matches may
        # change again (rare: one pass is the usual case).
        again = pc.and_(pc.not_equal(found, before), pc.match_substring_regex(found, combined))
        if not pc.any(again).as_py():
            break
    return pc.replace_with_mask(arr, hits, found)
