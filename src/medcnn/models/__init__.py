"""Networks by name: ``create_model``, ``register_model``, ``list_models``."""
from medcnn.models.from_plan import deep_supervision_weights, network_from_plan, override_plan
from medcnn.models.registry import Normalize, create_model, list_models, load_plugins, model_options, options_kept, register_model

__all__ = ["Normalize", "create_model", "deep_supervision_weights", "list_models", "load_plugins", "model_options",
           "network_from_plan", "options_kept", "override_plan", "register_model"]
