"""Entry point module of dmem-chroma."""
