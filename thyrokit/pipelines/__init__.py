"""Pipeline-level work: the demo phantom, splits, export and the modeller's loader."""


def __getattr__(name: str):
    # Imported on first use, so the command line does not load torch for every command.
    if name == "load_release":
        from thyrokit.pipelines.loader import load_release

        return load_release
    raise AttributeError(f"module 'thyrokit.pipelines' has no attribute {name!r}")


__all__ = ["load_release"]
