"""dmem-redis (work in progress)."""
