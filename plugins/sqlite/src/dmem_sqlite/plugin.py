"""Entry point module of dmem-sqlite (providers registered once the backend lands)."""
