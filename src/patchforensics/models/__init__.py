"""Model registry and receptive fields.

>>> from patchforensics.models import create_model, receptive_field
>>> net = create_model("xception_block2")
>>> receptive_field(net, 128).size
"""
# importing a family's file registers it; this order is the order `patchforensics models` lists them in
from . import xception as _xception  # noqa: F401,I001
from . import resnet as _resnet  # noqa: F401
from . import widenet as _widenet  # noqa: F401
from .receptive_field import ReceptiveField, architecture_field, receptive_field
from .registry import (INIT_TYPES, SEED_INIT_GAIN, check_model_name, create_model, init_weights,
                       is_patch_model, list_models, list_patch_models)

__all__ = ["create_model", "list_models", "list_patch_models", "is_patch_model", "check_model_name",
           "init_weights", "INIT_TYPES", "SEED_INIT_GAIN", "receptive_field", "architecture_field",
           "ReceptiveField"]
