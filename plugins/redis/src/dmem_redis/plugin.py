"""Entry point module of dmem-redis."""
