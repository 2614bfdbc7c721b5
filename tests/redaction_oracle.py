"""What a redacted value must look like, computed independently of telelake.redact.policy.

Plain Python (hmac, re, str.split) per value; the store does the same with Arrow compute
kernels over whole columns and RE2 scans that skip what no rule matches. Only the rules
themselves (rules.toml: pattern, secret group, name) are shared; here each one is applied
with Python's `re`, one after the other, pass after pass, with nothing skipped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

from telelake.redact.patterns import MAX_PASSES, Rule, load_rules

RULES = load_rules()
HASH_MARKER = re.compile(r"\[REDACTED:hash:[0-9a-f]{6,64}\]")


def _replacement(rule: Rule) -> str:
    """The secret group becomes the rule's marker; the other groups stay."""
    marker = f"[REDACTED:pattern:{rule.name}]"
    if rule.secret_group is None:
        return marker
    groups = re.compile(rule.pattern).groups
    return "".join(marker if g == rule.secret_group else f"\\g<{g}>" for g in range(1, groups + 1))


def redact_text(text: str) -> tuple[str, bool]:
    """Every rule in file order, repeated until nothing changes: (text, changed)."""
    clean = _redact(text)[0]
    return clean, clean != text


def _redact(text: str) -> tuple[str, list[str]]:
    """(text, the rules that changed something, in file order)."""
    fired: set[str] = set()
    for _ in range(MAX_PASSES):
        before = text
        for rule in RULES:
            text, count = re.subn(rule.pattern, _replacement(rule), text)
            if count:
                fired.add(rule.name)
        if text == before:
            break
    return text, [r.name for r in RULES if r.name in fired]


def store_key(root: Path) -> bytes:
    return (root / "_metadata" / "redaction.key").read_bytes()


def expected(policy: str, value: Any, key: bytes, *, is_json: bool = False) -> Any:
    """The stored form of `value` under `policy` ("hash", "pattern", "truncate:N", ...)."""
    if value is None or policy == "drop":
        return None
    if is_json:
        return _json(value)
    if policy == "hash":
        if HASH_MARKER.fullmatch(value):
            return value
        return (
            "[REDACTED:hash:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:12] + "]"
        )
    if policy == "pattern":
        return redact_text(value)[0]
    if policy.startswith("truncate:"):
        keep = int(policy.split(":")[1])
        lead = "/" if value.startswith("/") else ""
        parts = value[len(lead) :].split("/")
        if len(parts) <= keep or "" in parts[:keep] or not "/".join(parts[keep:]):
            return value
        return lead + "/".join(parts[:keep]) + "/…"
    if policy == "normalize":
        for home in ("/home/", "/Users/"):
            if value.startswith(home):
                rest = value[len(home) :]
                user, sep, tail = rest.partition("/")
                if user:
                    value = "~" + sep + tail
        if value == "/root" or value.startswith("/root/"):
            value = "~" + value[len("/root") :]
        return re.sub(r"[0-9]+(?:\.[0-9]+)+", "<v>", value)
    raise ValueError(policy)


def _pair_value(clean: str, key: str, first_rule: str) -> str:
    """The value of a redacted `{"key": "value"}` pair, or, when redaction broke the
    pair's JSON, the marker of the first rule that fired in place of the whole value."""
    try:
        back = json.loads(clean)
    except ValueError:
        back = None
    if isinstance(back, dict) and list(back) == [key] and isinstance(back[key], str):
        return back[key]
    return f"[REDACTED:pattern:{first_rule}]"


def _json(text: str) -> str:
    changed = False

    def walk(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, str):
            clean, fired = redact_text(node)
            changed = changed or fired
            return clean
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                key, value = walk(k), walk(v)
                if isinstance(value, str):
                    pair = json.dumps({key: value}, ensure_ascii=False)
                    clean, fired = _redact(pair)
                    if fired:
                        changed = True
                        value = _pair_value(clean, key, fired[0])
                out[key] = value
            return out
        return node

    try:
        parsed = json.loads(text)
    except ValueError:  # declared json but is not: redacted as plain text
        return redact_text(text)[0]
    doc = walk(parsed)
    return json.dumps(doc, ensure_ascii=False) if changed else text
