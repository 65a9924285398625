"""dmem-conformance (work in progress)."""
