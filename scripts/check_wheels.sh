#!/usr/bin/env bash
# Build the wheels, install them in a fresh venv the way users do
# (pip install 'dmem[sqlite]' / 'dmem[redis]'), and run the README examples there.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
redis_pid=""
cleanup() { [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

python -m build --wheel --outdir "$work/dist" . >/dev/null
for pkg in plugins/sqlite plugins/redis conformance; do
  python -m build --wheel --outdir "$work/dist" "$pkg" >/dev/null
done
ls "$work/dist"

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --find-links "$work/dist" 'dmem[sqlite]'
# The embedded default, in a private data directory.
(cd "$work" && HOME="$work/home" XDG_DATA_HOME="$work/home/data" DMEM_URL= \
  "$work/venv/bin/python" "$OLDPWD/examples/quickstart.py")
test -f "$work/home/data/dmem/default.db"

"$work/venv/bin/pip" install -q --find-links "$work/dist" 'dmem[redis]'
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
redis_pid=$!
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
(cd "$work" && DMEM_URL="redis://127.0.0.1:$port/0" \
  "$work/venv/bin/python" "$OLDPWD/examples/quickstart.py")
# The README's own Redis example, verbatim but for the throwaway server's port.
python3 - README.md "redis://127.0.0.1:$port/0" >"$work/readme_redis.py" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
section = text.split("## Quickstart", 1)[1]
code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
assert "redis://localhost:6379/0" in code, "the README's Redis example changed: update this check"
print(code.replace("redis://localhost:6379/0", sys.argv[2]))
PY
out=$(cd "$work" && "$work/venv/bin/python" readme_redis.py)
echo "$out"
grep -q "{'name': 'Ada'}" <<<"$out" && grep -q "\['user:123'\]" <<<"$out"
"$work/venv/bin/dmem" plugins
echo "wheels OK"
