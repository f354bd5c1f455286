"""Reading (and writing) other libraries' adapter artefacts.

``peft``: PEFT LoRA directories. ``adapterhub`` / ``adapterhub_export``: AdapterHub ``adapters`` bottleneck adapters,
AdapterFusion layers and classification heads, both ways.
"""
