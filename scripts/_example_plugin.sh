# Sourced by check_plugin_example.sh and check_files_example.sh: an example plugin as its users
# get it. `example_install DIR DIST MODULE` builds the wheels (dmem, dmem-sqlite, dmem-conformance
# and the example's), installs `DIST[test]` from them in a fresh venv, checks that dmem and MODULE
# come from that venv and that `dmem plugins` lists the plugin, and leaves `$bin` (the venv's
# bin/), `$work` (a scratch directory, removed at exit) and `$root` set, with the current
# directory outside the checkout. `example_tests` runs the example's own tests there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS

step() { printf '\n--- %s (%ss)\n' "$1" "$((SECONDS - start))"; }

example_install() {
  example=$1
  local dist=$2 module=$3 scheme=$4
  step "build wheels: dmem, dmem-sqlite (a dependency of dmem), dmem-conformance, $dist"
  for pkg in . plugins/sqlite conformance "$example"; do
    python -m build --wheel --outdir "$work/dist" "$pkg" >"$work/build.log" 2>&1 ||
      { cat "$work/build.log"; echo "FAIL: building $pkg" >&2; exit 1; }
  done
  ls "$work/dist"

  step "fresh venv: pip install $dist[test] from the built wheels"
  python3 -m venv "$work/venv"
  bin=$work/venv/bin
  # The wheel files themselves, so a same-named project on the index can never stand in.
  "$bin/pip" install -q --find-links "$work/dist" "$work"/dist/*.whl "$dist[test]" \
    2> >(grep -v "^WARNING: Location" >&2)
  cd "$work" # nothing may come from the checkout from here on
  "$bin/python" - "$module" <<'PY'
import importlib, sys
import dmem
plugin = importlib.import_module(sys.argv[1])
assert "site-packages" in dmem.__file__ and "site-packages" in plugin.__file__
PY
  "$bin/dmem" plugins | grep -A1 "^$scheme "
}

example_tests() {
  step "the example's own tests, with pytest in the fresh venv"
  local rc=0
  "$bin/pytest" -q -p no:cacheprovider "$root/$example/tests" >"$work/pytest.out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$work/pytest.out"
    echo "FAIL: pytest on $example/tests exited $rc" >&2
    exit 1
  fi
  tail -n 1 "$work/pytest.out"
}
