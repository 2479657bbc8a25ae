"""Pipeline-level work: the demo phantom, splits, export and the modeller's loader."""
