"""Loss functions, grouped by family; the public names are in ``gradtx.losses``."""
