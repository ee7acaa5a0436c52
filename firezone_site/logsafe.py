"""Log lines that an agent, client or browser cannot forge.

Strings from the outside (a gateway's error reason, a request path, a name) can hold newlines,
carriage returns or terminal escape sequences; logged raw, a reason with ``\\n`` writes a whole
fake log line and ``\\x1b[...`` repaints an operator's terminal. Two layers:

- :func:`escaped` for values the portal logs on purpose: the ``unicode_escape`` form Django's own
  ``log_response`` uses (``\\n`` -> ``\\\\n``, ESC -> ``\\\\x1b``; backslashes doubled, so the
  escaped text is unambiguous).
- :class:`EscapingFormatter` for every record on the portal's console handler (ours, Django's,
  daphne's): control characters in the formatted message are escaped, so one record is one line.
  A traceback appended to the record stays multi-line.
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escaped(value: object) -> str:
    """``value`` as text safe for one log line (``unicode_escape``; non-text via ``str``)."""
    return str(value).encode("unicode_escape").decode("ascii")


def escape_control(text: str) -> str:
    """Only the control characters of ``text`` escaped (printable non-ASCII kept as is)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class EscapingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_control(super().formatMessage(record))
