#!/usr/bin/env bash
# The example third-party plugin (examples/dmem-shelf) as its users get it: build the wheels,
# install the plugin in a fresh venv, and check with the conformance suite there that
#   - `dmem conformance shelf://...` passes (exit 0),
#   - the deliberately broken `shelf+broken://...` fails (exit 1) and the clause table names
#     the clause it breaks (values.awkward),
#   - the example's own tests/test_conformance.py passes under pytest.
# Run from anywhere with the repository's .venv active (python -m build must be available).
source "$(dirname "$0")/_example_plugin.sh"
example_install examples/dmem-shelf dmem-shelf dmem_shelf shelf

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

example_tests

echo
echo "plugin example OK ($((SECONDS - start))s)"
