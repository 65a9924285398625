#!/usr/bin/env bash
# The tutorial's worked example (examples/dmem-files, files:///DIR) as its users get it:
# build the wheels, install `dmem-files[test]` in a fresh venv, and check there that
#   - `dmem plugins` lists it,
#   - `dmem conformance files://DIR` passes with no clause failed and the down-backend
#     clause run (on the plugin's twin, a directory under the null device),
#   - the example's own tests pass under pytest (the suite, and if_not_exists raced by
#     processes).
# Run from anywhere with the repository's .venv active (python -m build must be available).
source "$(dirname "$0")/_example_plugin.sh"
example_install examples/dmem-files dmem-files dmem_files files

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

example_tests

echo
echo "files example OK ($((SECONDS - start))s)"
