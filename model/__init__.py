"""Pose networks of the Lite CSW-HRNet workbench: pure torch modules, a registry and weight-map probes."""
from model.layers import FIRST_STAGE
from model.lite_hrnet import load_official_state_dict, local_to_official_keys
from model.probes import location_maps, record_weight_maps, run_with_probes, weight_map_modules
from model.registry import INPUT_SIZES, build_model, model_names

__all__ = [
    "FIRST_STAGE",
    "INPUT_SIZES",
    "build_model",
    "load_official_state_dict",
    "local_to_official_keys",
    "location_maps",
    "model_names",
    "record_weight_maps",
    "run_with_probes",
    "weight_map_modules",
]
