"""Server paths out of what the network sees: error details and training logs name files by their last part.

An absolute path (``/srv/qcline/data/frames/ab/cd.jpg``) tells an attacker the layout of the server, the user
it runs as and where the data lies; the person reading an error needs only which file, which the last part
says (``…/cd.jpg``). Logs on the server keep the full paths.
"""

from __future__ import annotations

import re

_ABSOLUTE = re.compile(r"(?<![\w.:/~-])(?:~/|/)(?:[^\s/'\"()<>:,;|]+/)+([^\s/'\"()<>:,;|]*)")


def redact_paths(text: str) -> str:
    """``text`` with every absolute (or ``~``) path replaced by ``…/`` and its last part."""
    return _ABSOLUTE.sub(lambda m: "…/" + m.group(1), text)


__all__ = ["redact_paths"]
