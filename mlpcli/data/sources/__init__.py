"""The data sources, one module each. Every module here lists its `Source` descriptors (mlpcli.data.source)
in a module-level `SOURCES`; `mlpcli.data.SOURCES` collects them all, so adding a source is adding a module."""
