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
from workbench.app.analysis import CompareOutputs, InspectOutputs, InspectResult, choose_person, compare, \
    default_layer, default_location, gradcam_image, inspect_outputs, panel_choices, run_inspect, weight_maps_image
from workbench.app.inputs import BOX_MODES, LoadedImage, detection_choices, drawn_boxes, example_images, \
    load_image, person_box, read_detections, whole_image_box
from workbench.detection.yolox import PersonDetector
from workbench.prediction.api import Predictor, PredictOptions
from workbench.prediction.outputs import predict_video
from workbench.prediction.video import video_info
from workbench.app.models import weight_choices
from workbench.interpret.structure import model_structure
from workbench.zoo.cache import CHECKPOINT, ModelCache, best_weights
from workbench.common.errors import WorkbenchError

DEFAULT_MODEL = "lite_csw_hrnet"
COMPARE_MODELS = ("lite_csw_hrnet", "lite_hrnet_18")
MAX_VIDEO_FRAMES = 300
"""The Video tab processes at most this many frames (a minute at 5 fps, 10 s at 30 fps) and says so beyond it."""
MAX_VIDEO_PIXELS = 1920 * 1080
"""Videos with larger frames are refused by the Video tab (the command line takes any size)."""


def compare_locations() -> list[str]:
    """Every weighting location of any model, in the order of the first model that has it."""
    seen: dict[str, None] = {}
    for name in model_names():
        seen.update(dict.fromkeys(model_structure(name).locations))
    return list(seen)


class Workbench:
    """The shared context of the app's handlers: `cache` of built models, `examples` by label, `output_root`, under
    which each request writes its downloads to a new folder, and the person `detector` (None, with the reason in
    `detector_problem`, when no detector file could be found: the other box sources keep working)."""

    def __init__(self, cache: ModelCache, output_root: str | Path,
                 examples: dict[str, Callable[[], np.ndarray]] | None = None, detector: PersonDetector | None = None,
                 detector_problem: str = "no person detector was given") -> None:
        self.cache = cache
        self.output_root = Path(output_root)
        self.examples = example_images() if examples is None else examples
        self.detector = detector
        self.detector_problem = detector_problem

    def image(self, upload: str | None, example: str | None) -> LoadedImage:
        """The uploaded image, else the chosen example."""
        return load_image(upload, example, self.examples)

    def people_boxes(self, image: LoadedImage, box_mode: str, box_text: str, detection: str | None,
                     drawn: dict | None) -> tuple[np.ndarray, np.ndarray | None, str]:
        """The person boxes (N, 4) x, y, w, h in working pixels, their detector scores (None when not detected) and
        a sentence on their source. "detected people" falls back, visibly, to the whole image when there is no
        detector or it finds nobody."""
        if box_mode not in BOX_MODES:
            raise WorkbenchError(f"unknown box mode {box_mode!r}. Choose one of: {', '.join(BOX_MODES)}.")
        if box_mode == "detected people":
            if self.detector is None:
                return whole_image_box(image), None, f"whole image: {self.detector_problem}"
            found = self.detector.detect(image.pixels)
            if not len(found):
                return whole_image_box(image), None, "whole image: the detector found no person"
            return found.boxes, found.scores, f"found by the person detector ({self.detector.path.name})"
        if box_mode == "drawn boxes":
            boxes = drawn_boxes(image, drawn)
            return boxes, None, f"{len(boxes)} drawn {'box' if len(boxes) == 1 else 'boxes'}"
        box = person_box(image, box_mode, (detection if box_mode == "detection file" else box_text) or "")
        return (whole_image_box(image), None, "whole image") if box is None else (box[None], None, box_mode)

    def preview(self, upload: str | None, example: str | None, box_mode: str, box_text: str,
                detection: str | None) -> dict | None:
        """The image for the box drawer (an image-annotator value), with the boxes the chosen source gives already
        drawn; None before an image is chosen. "drawn boxes" starts from the detected people (to adjust, delete or
        add to); a typed box not typed yet is simply not drawn."""
        if not upload and not example:
            return None
        image = self.image(upload, example)
        if box_mode == "typed box" and not (box_text or "").strip():
            boxes, scores = np.zeros((0, 4)), None
        else:
            source = "detected people" if box_mode == "drawn boxes" else box_mode
            boxes, scores, _ = self.people_boxes(image, source, box_text, detection, None)
        labels = [f"person {score:.2f}" for score in scores] if scores is not None else ["person"] * len(boxes)
        return {"image": image.pixels,
                "boxes": [{"xmin": float(x), "ymin": float(y), "xmax": float(x + w), "ymax": float(y + h),
                           "label": label, "color": (255, 64, 64)} for (x, y, w, h), label in zip(boxes, labels)]}

    @staticmethod
    def people_preview(result: InspectResult | None) -> dict | None:
        """The box drawer's value after a Run: the image with every person's box, numbered as on the skeleton."""
        if result is None:
            return None
        return {"image": result.image.pixels,
                "boxes": [{"xmin": float(x), "ymin": float(y), "xmax": float(x + w), "ymax": float(y + h),
                           "label": f"#{index}", "color": (255, 64, 64)}
                          for index, (x, y, w, h) in enumerate(person.box for person in result.people)]}

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
                checkpoint: str | None, box_mode: str, box_text: str, detection: str | None, drawn: dict | None,
                flip: bool, location: str | None, joint: str, layer: str | None) -> tuple[InspectOutputs, InspectResult]:
        """Run the Inspect tab on every person: every panel (of the first person), the downloads, and the result
        kept as the session's state."""
        image = self.image(upload, example)
        boxes, scores, source = self.people_boxes(image, box_mode, box_text, detection, drawn)
        checkpoint = checkpoint if weights == CHECKPOINT else None
        loaded = self.cache.get(model_name, weights, checkpoint)
        result = run_inspect(loaded, image, boxes, scores, flip, source)
        return inspect_outputs(result, self.cache, location, joint, layer, self._folder()), result

    def person(self, result: InspectResult | None, index: int | None, location: str | None, joint: str,
               layer: str | None) -> tuple[InspectOutputs, InspectResult]:
        """Show person `index` of the last Inspect run: every panel redrawn from the kept result (no new pass
        through the network, but for Grad-CAM of the new crop)."""
        if result is None:
            raise WorkbenchError("nothing inspected yet: run Inspect first, then pick a person.")
        result = choose_person(result, index)
        return inspect_outputs(result, self.cache, location, joint, layer, self._folder()), result

    @staticmethod
    def weight_maps(result: InspectResult | None, location: str | None) -> np.ndarray | None:
        """Redraw the weight maps of the last inspected image at another location."""
        return None if result is None else weight_maps_image(result, location)

    def gradcam(self, result: InspectResult | None, joint: str, layer: str | None) -> np.ndarray | None:
        """Redraw Grad-CAM of the last inspected image for another joint or layer, with the result's own model (a
        layer it does not have gives way to its default layer)."""
        return None if result is None else gradcam_image(result, self.cache, joint, layer)

    def compare(self, result: InspectResult | None, names: list[str], location: str | None,
                flip: bool) -> CompareOutputs:
        """Run the Compare tab: the person chosen in Inspect through each chosen model."""
        return compare(self.cache, result, list(names or []), location, flip)

    def video(self, path: str | None, model_name: str, weights: str, flip: bool) -> tuple[str, str, str]:
        """Run the Video tab: the uploaded video with every person drawn (track ids in stable colours) and its
        keypoints as JSON, at most MAX_VIDEO_FRAMES frames, with a progress bar (tqdm, which the page follows); returns
        the two files and a status line."""
        if not path:
            raise WorkbenchError("no video: upload an mp4, avi, mov, mkv or webm file.")
        source = Path(path)
        info = video_info(source)
        if info.width * info.height > MAX_VIDEO_PIXELS:
            raise WorkbenchError(f"{source.name} is {info.width}x{info.height}: frames above "
                                 f"{MAX_VIDEO_PIXELS // 1_000_000} megapixels are refused here. Resize it, or use "
                                 "`python -m workbench predict`, which has no limit.")
        loaded = self.cache.get(model_name, weights if weights != CHECKPOINT else best_weights(model_name))
        predictor = Predictor(loaded.network, self.detector, PredictOptions(flip=flip))
        frames = min(info.frames, MAX_VIDEO_FRAMES) if info.frames > 0 else MAX_VIDEO_FRAMES
        with loaded.lock:
            drawn, records = predict_video(predictor, source, self._folder(), MAX_VIDEO_FRAMES, progress=True)
        lines = [f"**{loaded.label}** on {source.name} ({info.width}x{info.height}, {info.fps:.1f} fps): "
                 f"{frames} frames drawn."]
        if info.frames > MAX_VIDEO_FRAMES:
            lines.append(f"The video has {info.frames} frames: only the first {MAX_VIDEO_FRAMES} "
                         f"({MAX_VIDEO_FRAMES / info.fps:.0f} s) are processed here; `python -m workbench predict` "
                         "takes the whole video.")
        if self.detector is None:
            lines.append(f"No person detector ({self.detector_problem}): each frame is one person.")
        return str(drawn), str(records), "\n\n".join(lines)
