#!/usr/bin/env bash
# The example third-party plugin (examples/dmem-shelf) as its users get it: build the wheels,
# install the plugin in a fresh venv, and check with the conformance suite there that
#   - `dmem conformance shelf://...` passes (exit 0),
#   - the deliberately broken `shelf+broken://...` fails (exit 1) and the clause table names
#     the clause it breaks (values.awkward),
#   - the example's own tests/test_conformance.py passes under pytest.
# Run from anywhere with the repository's .venv active (python -m build must be available).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
example=examples/dmem-shelf
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS

step() { printf '\n--- %s (%ss)\n' "$1" "$((SECONDS - start))"; }

step "build wheels: dmem, dmem-sqlite (a dependency of dmem), dmem-conformance, dmem-shelf"
for pkg in . plugins/sqlite conformance "$example"; do
  python -m build --wheel --outdir "$work/dist" "$pkg" >"$work/build.log" 2>&1 ||
    { cat "$work/build.log"; echo "FAIL: building $pkg" >&2; exit 1; }
done
ls "$work/dist"

step "fresh venv: pip install dmem-shelf[test] (dmem-conformance) from the built wheels"
python3 -m venv "$work/venv"
bin=$work/venv/bin
# The wheel files themselves, so a same-named project on the index can never stand in for them.
"$bin/pip" install -q --find-links "$work/dist" "$work"/dist/*.whl "dmem-shelf[test]"
cd "$work" # nothing may come from the checkout from here on
"$bin/python" - <<'EOF'
import dmem, dmem_shelf
assert "site-packages" in dmem.__file__ and "site-packages" in dmem_shelf.__file__
EOF
"$bin/dmem" plugins | grep -A1 '^shelf '

step "dmem conformance shelf://... must pass"
rc=0
"$bin/dmem" conformance shelf://check-plugin-example >"$work/pass.out" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] || ! grep -E '^model\.state-machine +passed' "$work/pass.out"; then
  cat "$work/pass.out"
  echo "FAIL: dmem conformance on the example plugin exited $rc, not 0 with every clause" >&2
  exit 1
fi
tail -n 1 "$work/pass.out"

step "dmem conformance shelf+broken://... must fail, naming clause values.awkward"
rc=0
"$bin/dmem" conformance shelf+broken://check-plugin-example >"$work/broken.out" 2>&1 || rc=$?
# 1 is pytest's "tests failed"; anything else (0, a usage or internal error) is wrong here.
if [ "$rc" -ne 1 ] || ! grep -E '^values\.awkward +FAILED' "$work/broken.out"; then
  cat "$work/broken.out"
  echo "FAIL: the broken variant exited $rc; expected 1 and values.awkward FAILED" >&2
  exit 1
fi
grep -m 1 -F "AssertionError: 'k0'" "$work/broken.out" || true
tail -n 1 "$work/broken.out"

step "the example's own tests/test_conformance.py, with pytest in the fresh venv"
rc=0
"$bin/pytest" -q -p no:cacheprovider "$root/$example/tests" >"$work/pytest.out" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
  cat "$work/pytest.out"
  echo "FAIL: pytest on $example/tests exited $rc" >&2
  exit 1
fi
tail -n 1 "$work/pytest.out"

echo
echo "plugin example OK ($((SECONDS - start))s)"
