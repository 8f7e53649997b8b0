"""The app's event handlers: one method per event, from the components' values to the outputs' values.

`Workbench` holds what every request shares: the model cache (thread-safe), the example images and the folder the
downloads are written to (one fresh subfolder per request). Everything else lives in the arguments and the
returned per-session `InspectResult`, so two users never see each other's results. Handlers raise WorkbenchError
for anything a user can cause; the layout shows it as a message.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from model import model_names
from workbench.interpret import drawing
from workbench.app.analysis import CompareOutputs, InspectOutputs, InspectResult, compare, default_layer, \
    default_location, gradcam_image, inspect_outputs, panel_choices, run_inspect, weight_maps_image
from workbench.app.inputs import LoadedImage, detection_choices, example_images, load_image, person_box, \
    read_detections
from workbench.app.models import weight_choices
from workbench.interpret.structure import model_structure
from workbench.zoo.cache import CHECKPOINT, ModelCache, best_weights
from workbench.common.errors import WorkbenchError

DEFAULT_MODEL = "lite_csw_hrnet"
COMPARE_MODELS = ("lite_csw_hrnet", "lite_hrnet_18")


def compare_locations() -> list[str]:
    """Every weighting location of any model, in the order of the first model that has it."""
    seen: dict[str, None] = {}
    for name in model_names():
        seen.update(dict.fromkeys(model_structure(name).locations))
    return list(seen)


class Workbench:
    """The shared context of the app's handlers: `cache` of built models, `examples` by label, and `output_root`,
    under which each request writes its downloads to a new folder."""

    def __init__(self, cache: ModelCache, output_root: str | Path,
                 examples: dict[str, Callable[[], np.ndarray]] | None = None) -> None:
        self.cache = cache
        self.output_root = Path(output_root)
        self.examples = example_images() if examples is None else examples

    def image(self, upload: str | None, example: str | None) -> LoadedImage:
        """The uploaded image, else the chosen example."""
        return load_image(upload, example, self.examples)

    def image_and_box(self, upload: str | None, example: str | None, box_mode: str, box_text: str,
                      detection: str | None) -> tuple[LoadedImage, np.ndarray | None]:
        """The image and the person box in working pixels (None: the whole image); the box comes from `box_text`
        for "typed box" and from the chosen detection for "detection file"."""
        image = self.image(upload, example)
        text = detection if box_mode == "detection file" else box_text
        return image, person_box(image, box_mode, text or "")

    def preview(self, upload: str | None, example: str | None, box_mode: str, box_text: str,
                detection: str | None) -> np.ndarray | None:
        """The image with its person box drawn, None before an image is chosen."""
        if not upload and not example:
            return None
        image, box = self.image_and_box(upload, example, box_mode, box_text, detection)
        return image.pixels if box is None else drawing.draw_box(image.pixels, box)

    def detections(self, path: str | None, upload: str | None, example: str | None) -> list[tuple[str, str]]:
        """Menu entries (label, "x, y, w, h") for the detections of the current image in the results file."""
        if not path:
            return []
        detections = read_detections(path)
        if not upload and not example:
            raise WorkbenchError("choose the image before its detection file.")
        return detection_choices(detections, self.image(upload, example).image_id)

    @staticmethod
    def model_menus(name: str) -> tuple[list[tuple[str, str]], str, list[str], str | None, list[str], str | None]:
        """For model `name`: weight choices and default, weighting locations and default, Grad-CAM layers and
        default (the last, nearest the output)."""
        structure = model_structure(name)
        layers = list(structure.layers)
        return (weight_choices(name), best_weights(name), list(structure.locations),
                default_location(structure.locations), layers, default_layer(structure.layers))

    @staticmethod
    def result_menus(result: InspectResult | None, location: str | None,
                     layer: str | None) -> tuple[list[str], str | None, list[str], str | None]:
        """The weighting-location and Grad-CAM-layer menus of the inspected result's model: choices, and the values
        its panels show for the chosen `location` and `layer` (see `panel_choices`). So that the menus always belong
        to the result on screen, the page sets them from this after each Run rather than when the model menu
        changes (wire it to succeed the Run). Without a result, both menus are empty."""
        if result is None:
            return [], None, [], None
        structure = model_structure(result.model_key[0])
        location, layer = panel_choices(result, location, layer)
        return list(structure.locations), location, list(structure.layers), layer

    def _folder(self) -> Path:
        self.output_root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="inspect-", dir=self.output_root))

    def inspect(self, upload: str | None, example: str | None, model_name: str, weights: str,
                checkpoint: str | None, box_mode: str, box_text: str, detection: str | None, flip: bool,
                location: str | None, joint: str, layer: str | None) -> tuple[InspectOutputs, InspectResult]:
        """Run the Inspect tab: every panel, the downloads, and the result kept as the session's state."""
        image, box = self.image_and_box(upload, example, box_mode, box_text, detection)
        checkpoint = checkpoint if weights == CHECKPOINT else None
        loaded = self.cache.get(model_name, weights, checkpoint)
        result = run_inspect(loaded, image, box, flip)
        return inspect_outputs(result, self.cache, location, joint, layer, self._folder()), result

    @staticmethod
    def weight_maps(result: InspectResult | None, location: str | None) -> np.ndarray | None:
        """Redraw the weight maps of the last inspected image at another location."""
        return None if result is None else weight_maps_image(result, location)

    def gradcam(self, result: InspectResult | None, joint: str, layer: str | None) -> np.ndarray | None:
        """Redraw Grad-CAM of the last inspected image for another joint or layer, with the result's own model (a
        layer it does not have gives way to its default layer)."""
        return None if result is None else gradcam_image(result, self.cache, joint, layer)

    def compare(self, upload: str | None, example: str | None, box_mode: str, box_text: str,
                detection: str | None, names: list[str], location: str | None, flip: bool) -> CompareOutputs:
        """Run the Compare tab: the same image and box through each chosen model."""
        image, box = self.image_and_box(upload, example, box_mode, box_text, detection)
        return compare(self.cache, image, box, list(names or []), location, flip)
