"""pytest11 entry of dmem-conformance."""
