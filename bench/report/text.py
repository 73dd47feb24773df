"""Plain text from stored rows, made safe before any format sees it: control characters and
bidirectional overrides are dropped (a U+202E in a method name would reverse what a reader
sees), line and paragraph breaks become spaces. Each format then escapes its own specials."""
import re

BREAKS = re.compile("[\t\n\v\f\r\u0085\u2028\u2029]+")
INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def clean_text(text) -> str:
    return INVISIBLE.sub("", BREAKS.sub(" ", str(text)))


def clean_strings(value):
    """`value` (a row, or any JSON value in it) with every string cleaned, keys included."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): clean_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_strings(v) for v in value]
    return value
