"""Print the first ```python block of a Markdown file, with URLs swapped for test servers.

    python scripts/readme_example.py FILE [OLD_URL NEW_URL]...

Used by scripts/check_wheels.sh to run each backend's README example, verbatim but for
the server it talks to. Fails when an OLD_URL is not in the block, so an edited example
cannot silently stop being checked.
"""

from __future__ import annotations

import re
import sys


def main(argv: list[str]) -> int:
    path, *swaps = argv
    if len(swaps) % 2:
        print("usage: readme_example.py FILE [OLD_URL NEW_URL]...", file=sys.stderr)
        return 2
    with open(path, encoding="utf-8") as file:
        text = file.read()
    found = re.search(r"^```python\n(.*?)^```", text, re.S | re.M)
    if found is None:
        print(f"{path}: no python block", file=sys.stderr)
        return 1
    code = found.group(1)
    for old, new in zip(swaps[::2], swaps[1::2], strict=True):
        if old not in code:
            print(f"{path}: the example no longer names {old!r}: update the check", file=sys.stderr)
            return 1
        code = code.replace(old, new)
    sys.stdout.write(code)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
