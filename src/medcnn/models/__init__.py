"""Networks by name: ``create_model``, ``register_model``, ``list_models``."""
from medcnn.models.registry import Normalize, create_model, list_models, load_plugins, register_model

__all__ = ["Normalize", "create_model", "list_models", "load_plugins", "register_model"]
