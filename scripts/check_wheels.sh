#!/usr/bin/env bash
# The release as users install it: build every wheel and sdist (scripts/build-dist), then
# for each extra (sqlite, postgresql, redis, chroma, pykv, langchain, langgraph, encryption,
# conformance, all) make a fresh venv,
# `pip install --find-links DIST 'dmem[EXTRA]'` there, and run that backend's README example
# against a throwaway server where it needs one. Also: LICENSE is inside every wheel and sdist,
# and `dmem --version` names the plugins each extra brought.
# Run with the repository's .venv active (python -m build and twine must be available).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
redis_pid=""
pg_stop=""
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null
  [ -n "$pg_stop" ] && eval "$pg_stop" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
start=$SECONDS
step() { printf '\n--- %s (%ss)\n' "$1" "$((SECONDS - start))"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

step "build every distribution (wheel and sdist), twine check"
bash scripts/build-dist "$work/dist"
ls "$work/dist"

step "LICENSE inside every wheel and sdist"
python3 - "$work/dist" <<'PY'
import sys, tarfile, zipfile
from pathlib import Path
license_text = Path("LICENSE").read_bytes()
for path in sorted(Path(sys.argv[1]).iterdir()):
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
            found = [archive.read(n) for n in names]
    else:
        with tarfile.open(path) as archive:
            members = [m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("/LICENSE")]
            found = [archive.extractfile(m).read() for m in members]  # type: ignore[union-attr]
    assert found == [license_text], f"{path.name}: LICENSE missing or different"
    print(f"{path.name}: LICENSE ok")
PY

# A fresh venv with dmem[EXTRA] from the built files only (the file paths themselves, so a
# same-named project on an index can never stand in for them).
venv_with() {
  local extra=$1
  python3 -m venv "$work/venv-$extra"
  # (grep drops the notes this machine's pip config prints about absent local indexes)
  "$work/venv-$extra/bin/pip" install -q --find-links "$work/dist" "dmem[$extra]" \
    2> >(grep -v "^WARNING: Location" >&2)
  "$work/venv-$extra/bin/dmem" --version
}
# Run a README's first python block in a scratch directory, URLs swapped for the test server.
run_example() {
  local extra=$1 readme=$2
  shift 2
  local dir="$work/run-$extra"
  mkdir -p "$dir/home"
  python3 scripts/readme_example.py "$readme" "$@" >"$dir/example.py"
  (cd "$dir" && HOME="$dir/home" XDG_DATA_HOME="$dir/home/data" DMEM_URL= \
    "$work/venv-$extra/bin/python" example.py)
}

step "dmem[sqlite]: the sqlite README example and the quickstart on the embedded default"
venv_with sqlite
out=$(run_example sqlite plugins/sqlite/README.md)
echo "$out"
grep -q "{'turns': 3}" <<<"$out"
(cd "$work/run-sqlite" && HOME="$work/run-sqlite/home" XDG_DATA_HOME="$work/run-sqlite/home/data" \
  DMEM_URL= "$work/venv-sqlite/bin/python" "$root/examples/quickstart.py")
test -f "$work/run-sqlite/home/data/dmem/default.db"

step "dmem[postgresql]: the PostgreSQL page's example on a throwaway server"
venv_with postgresql
pg=$(python3 - <<'PY'
import sys
sys.path.insert(0, "plugins/sqlite/tests")
from pgserver import PostgresServer
server = PostgresServer.start()
stop = [*server.prefix, server.pg_ctl, "-D", str(server.datadir), "-m", "immediate", "stop"]
print(server.url, " ".join(stop), "; rm -rf", server.root)
PY
)
pg_url=${pg%% *}
pg_stop=${pg#* }
out=$(run_example postgresql docs/backends/postgresql.md \
  "postgresql://app:secret@db.internal:5432/appdb" "$pg_url")
echo "$out"
grep -q "\['session:1'\]" <<<"$out"

step "dmem[redis]: the redis README example, and the main README's, on a throwaway server"
venv_with redis
port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
redis_pid=$!
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
out=$(run_example redis plugins/redis/README.md "redis://localhost:6379/0" "redis://127.0.0.1:$port/0")
echo "$out"
grep -q "{'name': 'Ada'}" <<<"$out"
out=$(run_example redis README.md "redis://localhost:6379/0" "redis://127.0.0.1:$port/0")
echo "$out"
grep -q "{'name': 'Ada'}" <<<"$out" && grep -q "\['user:123'\]" <<<"$out"

step "dmem[chroma]: the chroma README example (embedded)"
venv_with chroma
out=$(run_example chroma plugins/chroma/README.md)
echo "$out"
grep -q "{'name': 'Ada'}" <<<"$out"

step "dmem[pykv]: the py-key-value page's example (a SQLite file) with py-key-value-aio from the index"
venv_with pykv
out=$(run_example pykv docs/integrations/pykv.md)
echo "$out"
grep -q "\['user:2'\]" <<<"$out"

step "dmem[langchain]: the langchain-dmem README example (a SQLite file)"
venv_with langchain
out=$(run_example langchain integrations/langchain/README.md)
echo "$out"
grep -q "\['doc:1', 'doc:2'\]" <<<"$out"

step "dmem[langgraph]: examples/langgraph_agent.py twice on one SQLite file (the second run resumes)"
venv_with langgraph
python3 - "$work/dist" <<'PY'
import sys, zipfile
from pathlib import Path
# Namespace packages, as LangGraph's own savers ship them: no __init__.py above dmem/.
wheel = next(Path(sys.argv[1]).glob("langgraph_checkpoint_dmem-*.whl"))
names = zipfile.ZipFile(wheel).namelist()
for shared in ("langgraph/__init__.py", "langgraph/checkpoint/__init__.py", "langgraph/store/__init__.py"):
    assert shared not in names, f"{wheel.name} ships {shared}: it would shadow LangGraph's"
assert "langgraph/checkpoint/dmem/__init__.py" in names and "langgraph/store/dmem/__init__.py" in names
print(f"{wheel.name}: namespace packages ok")
PY
mkdir -p "$work/run-langgraph"
(cd "$work/run-langgraph" && "$work/venv-langgraph/bin/python" "$root/examples/langgraph_agent.py" agent.db)
out=$(cd "$work/run-langgraph" && "$work/venv-langgraph/bin/python" "$root/examples/langgraph_agent.py" agent.db)
echo "$out"
grep -q "resumed thread" <<<"$out" && grep -q "memory: {'name': 'Ada'}" <<<"$out"

step "dmem[encryption]: the encryption page's first example"
venv_with encryption
out=$(run_example encryption docs/encryption.md)
echo "$out"
grep -q "{'diagnosis': 'private'}" <<<"$out"

step "dmem[conformance]: the conformance README's command on a SQLite file"
venv_with conformance
(cd "$work" && "$work/venv-conformance/bin/dmem" conformance "sqlite:///$work/check.db" | tail -5)

step "dmem[all]: every plugin loads, the quickstart runs"
venv_with all
plugins=$("$work/venv-all/bin/dmem" plugins --json)
for name in sqlite redis chroma; do
  grep -q "\"$name\"" <<<"$plugins" || { echo "dmem[all] lacks the $name plugin" >&2; exit 1; }
done
(cd "$work/run-sqlite" && HOME="$work/run-sqlite/home" XDG_DATA_HOME="$work/run-sqlite/home/data" \
  DMEM_URL= "$work/venv-all/bin/python" "$root/examples/quickstart.py" >/dev/null)

step "wheels OK"
