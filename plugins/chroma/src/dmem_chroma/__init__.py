"""dmem-chroma (work in progress)."""
