"""Reading (and writing) other libraries' adapter artefacts."""
