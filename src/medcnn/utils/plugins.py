"""Plugins: Python modules (or .py files) that register tasks or networks when imported.

A plugin is imported when it is named by an installed package's entry point in the group
``medcnn.plugins``, in the environment variable ``MEDCNN_PLUGINS`` (comma-separated), with
``medcnn --plugin``, or in a plan's ``plugins:`` list. Importing twice is a no-op.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

from medcnn.errors import ConfigError

PLUGINS_ENV = "MEDCNN_PLUGINS"
ENTRY_POINT_GROUP = "medcnn.plugins"
_imported: set[str] = set()


def import_plugin(spec: str) -> None:
    """Import one plugin: a module name, or the path of a .py file."""
    spec = spec.strip()
    if not spec or spec in _imported:
        return
    try:
        if spec.endswith(".py"):
            path = Path(spec).resolve()
            if not path.is_file():
                raise ConfigError("plugin file not found", path)
            name = f"medcnn_plugin_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except ImportError as e:
        raise ConfigError(f"plugin module {spec!r} could not be imported ({e})") from None
    _imported.add(spec)


def import_plugins(specs: list[str] | tuple[str, ...] = ()) -> None:
    """The plugins of the installed packages' entry points and of ``MEDCNN_PLUGINS``, then ``specs``."""
    if ENTRY_POINT_GROUP not in _imported:
        _imported.add(ENTRY_POINT_GROUP)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            import_plugin(ep.value.split(":")[0])
    for spec in [*os.environ.get(PLUGINS_ENV, "").split(","), *specs]:
        import_plugin(spec)
