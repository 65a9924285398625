#!/usr/bin/env bash
# The tutorial's worked example (examples/dmem-files, files:///DIR) as its users get it:
# build the wheels, install `dmem-files[test]` in a fresh venv, and check there that
#   - `dmem plugins` lists it,
#   - `dmem conformance files://DIR` passes with no clause failed and the down-backend
#     clause run (on the plugin's twin, a directory under the null device),
#   - the example's own tests pass under pytest (the suite, and if_not_exists raced by
#     processes).
# Run from anywhere with the repository's .venv active (python -m build must be available).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
example=examples/dmem-files
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS

step() { printf '\n--- %s (%ss)\n' "$1" "$((SECONDS - start))"; }

step "build wheels: dmem, dmem-sqlite (a dependency of dmem), dmem-conformance, dmem-files"
for pkg in . plugins/sqlite conformance "$example"; do
  python -m build --wheel --outdir "$work/dist" "$pkg" >"$work/build.log" 2>&1 ||
    { cat "$work/build.log"; echo "FAIL: building $pkg" >&2; exit 1; }
done
ls "$work/dist"

step "fresh venv: pip install dmem-files[test], the one package its README names"
python3 -m venv "$work/venv"
bin=$work/venv/bin
# The wheel files themselves, so a same-named project on the index can never stand in for them.
"$bin/pip" install -q --find-links "$work/dist" "$work"/dist/*.whl "dmem-files[test]" \
  2> >(grep -v "^WARNING: Location" >&2)
cd "$work" # nothing may come from the checkout from here on
"$bin/python" - <<'PY'
import dmem, dmem_files
assert "site-packages" in dmem.__file__ and "site-packages" in dmem_files.__file__
PY
"$bin/dmem" plugins | grep -A1 '^files '

step "dmem conformance files://... must pass, the down-backend clause included"
rc=0
"$bin/dmem" conformance "files://$work/kv" >"$work/pass.out" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] || grep -q FAILED "$work/pass.out" ||
  ! grep -E '^errors\.unavailable +passed' "$work/pass.out" ||
  ! grep -E '^model\.state-machine +passed' "$work/pass.out"; then
  cat "$work/pass.out"
  echo "FAIL: dmem conformance on the files example exited $rc, not 0 with every clause" >&2
  exit 1
fi
grep -E '^[0-9]+ clauses:' "$work/pass.out"

step "the example's own tests, with pytest in the fresh venv"
rc=0
"$bin/pytest" -q -p no:cacheprovider "$root/$example/tests" >"$work/pytest.out" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
  cat "$work/pytest.out"
  echo "FAIL: pytest on $example/tests exited $rc" >&2
  exit 1
fi
tail -n 1 "$work/pytest.out"

echo
echo "files example OK ($((SECONDS - start))s)"
