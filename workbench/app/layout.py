"""The Gradio page: the Inspect, Compare and Complexity tabs, wired to `Workbench`'s handlers.

Only layout and wiring live here; every handler is a `Workbench` method (or a complexity-panel function) that the
tests call directly, wrapped by `readable` so that errors reach the page as messages.
"""
from __future__ import annotations

import gradio as gr

from workbench.app import complexity_panel
from gradio_image_annotation import image_annotator

from workbench.app.analysis import person_choices
from workbench.app.callbacks import COMPARE_MODELS, DEFAULT_MODEL, MAX_VIDEO_FRAMES, MAX_VIDEO_PIXELS, Workbench, \
    compare_locations
from workbench.app.inputs import BOX_MODES, MAX_SIDE
from workbench.app.messages import readable
from workbench.app.models import model_choices, training_note
from workbench.data.keypoints import JOINT_NAMES

CACHE_CLEANUP = (3600, 3600)  # every hour, delete the served files older than an hour

INTRO = f"""# Lite CSW-HRNet workbench
Upload a photo (or pick an example): a person detector finds everyone, and you pick whose keypoints, heatmaps,
channel (M_c) and spatial (M_s) weights inside every weighting block, and Grad-CAM to see. Boxes can also be drawn
on the image, typed, or taken from a detection file. Models without trained weights run with their random
initialisation and are marked untrained. Images above {MAX_SIDE} px on the long side are downscaled to {MAX_SIDE}
px; boxes and keypoints stay in the original image's pixels."""


def _figure(label: str, elem_id: str, height: int | None = None) -> gr.Image:
    """A picture panel; the figure carries its own title, so Gradio's label badge (which would cover it) is off."""
    return gr.Image(label=label, elem_id=elem_id, format="png", interactive=False, height=height,
                    buttons=["download", "fullscreen"], show_label=False)


def build_app(workbench: Workbench) -> gr.Blocks:
    """The app's Blocks; call `.queue()` and `.launch()` on it (see `workbench.commands.app`)."""
    weights, weights_value, locations, location_value, layers, layer_value = workbench.model_menus(DEFAULT_MODEL)
    with gr.Blocks(title="Lite CSW-HRNet workbench", delete_cache=CACHE_CLEANUP) as app:
        gr.Markdown(INTRO)
        result_state = gr.State(None)
        with gr.Tabs():
            with gr.Tab("Inspect", id="inspect"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=320):
                        upload = gr.File(label="Image file", file_types=["image"], type="filepath",
                                         elem_id="image-upload", height=100)
                        example = gr.Dropdown(list(workbench.examples), value=None, label="or an example")
                        box_mode = gr.Radio(list(BOX_MODES), value=BOX_MODES[0], label="Person boxes")
                        run = gr.Button("Run", variant="primary", elem_id="run-inspect")
                        model = gr.Dropdown(model_choices(), value=DEFAULT_MODEL, label="Model")
                        weight = gr.Dropdown(weights, value=weights_value, label="Weights")
                        weight_note = gr.Markdown(training_note(weights_value), elem_id="weights-note")
                        flip = gr.Checkbox(True, label="Flip test")
                        box_text = gr.Textbox(label="Typed box: x, y, w, h (image pixels)",
                                              placeholder="e.g. 150, 100, 220, 400")
                        with gr.Accordion("Own checkpoint", open=False):
                            checkpoint = gr.File(label="State dict (.pt / .pth), used with 'checkpoint file'",
                                                 file_types=[".pt", ".pth", ".ckpt", ".bin"], type="filepath",
                                                 height=100)
                        with gr.Accordion("Detection file", open=False):
                            detections = gr.File(label="COCO detection results (.json)", file_types=[".json"],
                                                 type="filepath", height=100)
                            detection = gr.Dropdown([], value=None, label="Detected person box")
                    with gr.Column(scale=2):
                        status = gr.Markdown(elem_id="inspect-status")
                        preview = image_annotator(label="Image and person boxes: drag to draw a box ('drawn boxes')",
                                                  label_list=["person"], label_colors=[(255, 64, 64)], boxes_alpha=0.1,
                                                  sources=[], elem_id="preview", height=360,
                                                  show_download_button=False, show_clear_button=False)
                        person = gr.Dropdown([], value=None, label="Person (as numbered on the skeleton)",
                                             elem_id="person")
                        skeleton = _figure("Everyone, and the chosen person's skeleton and joint confidence",
                                           "skeleton")
                        with gr.Row():
                            with gr.Column(scale=2):
                                merged = _figure("Heatmaps over the crop", "merged-heatmaps")
                            with gr.Column(scale=3):
                                grid = _figure("The 17 joint heatmaps", "heatmap-grid")
                        with gr.Accordion("Keypoints table", open=False):
                            table = gr.Dataframe(label="Keypoints (original image pixels)", interactive=False)
                        location = gr.Dropdown(locations, value=location_value,
                                               label="Weighting function (stage / module / block / branch)")
                        weight_maps = _figure("Weight maps", "weight-maps")
                        with gr.Row():
                            joint = gr.Dropdown(list(JOINT_NAMES), value=JOINT_NAMES[0], label="Grad-CAM joint")
                            layer = gr.Dropdown(layers, value=layer_value, label="Grad-CAM layer")
                        gradcam = _figure("Grad-CAM", "gradcam", height=420)
                        downloads = gr.File(label="Downloads: keypoints (COCO json), heatmaps (npy), figures (PNG)",
                                            file_count="multiple", interactive=False)
            with gr.Tab("Compare", id="compare"):
                gr.Markdown("The person chosen in Inspect (same image, same box), through several models with their "
                            "default weights (untrained models are marked). Run Inspect first.")
                with gr.Row():
                    compare_models = gr.CheckboxGroup(model_choices(), value=list(COMPARE_MODELS), label="Models")
                    compare_location = gr.Dropdown(compare_locations(), value=location_value,
                                                   label="Weighting function to show side by side")
                compare_run = gr.Button("Compare", variant="primary", elem_id="run-compare")
                latency = gr.Dataframe(label="Latency on this machine and confidence", interactive=False)
                skeletons = gr.Gallery(label="Skeletons", columns=3, height="auto", object_fit="contain", format="png",
                                       elem_id="compare-skeletons")
                heatmaps = gr.Gallery(label="Heatmaps over the crop", columns=3, height="auto", object_fit="contain",
                                      format="png")
                compare_weights = gr.Gallery(label="Weight maps (CSW next to Lite-HRNet)", columns=2, height="auto",
                                             object_fit="contain", format="png")
            with gr.Tab("Video", id="video"):
                gr.Markdown(f"Upload a video: every person of every frame, with an id that follows them, drawn "
                            f"into a new video, and their keypoints as JSON (one record per person per frame). At "
                            f"most {MAX_VIDEO_FRAMES} frames of at most {MAX_VIDEO_PIXELS // 1_000_000} megapixels "
                            f"are processed here (the first {MAX_VIDEO_FRAMES} of a longer video, and the status says "
                            "so); `python -m workbench predict` takes any video. The model and weights are Inspect's.")
                with gr.Row():
                    video_in = gr.Video(label="Video", sources=["upload"], elem_id="video-upload")
                    video_out = gr.Video(label="People drawn", interactive=False, elem_id="video-drawn")
                video_run = gr.Button("Run on the video", variant="primary", elem_id="run-video")
                video_status = gr.Markdown(elem_id="video-status")
                video_json = gr.File(label="Keypoints per frame (COCO json)", interactive=False)
            with gr.Tab("Complexity", id="complexity"):
                complexity_panel.build()

        image_inputs = [upload, example, box_mode, box_text, detection]

        def model_changed(name: str):
            choices, value, *_ = workbench.model_menus(name)
            return gr.Dropdown(choices=choices, value=value), training_note(value)

        model.change(readable(model_changed), model, [weight, weight_note], api_visibility="private")
        weight.change(training_note, weight, weight_note, api_visibility="private")

        def detections_changed(path, image_file, example_name):
            choices = workbench.detections(path, image_file, example_name)
            return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

        # Only the user's own actions redraw the preview, each exactly once (a chain of .change events would run it
        # once per component the chain updates, and show one error as many times).
        def redraw(listener) -> None:
            """After `listener`'s event: the image's detection menu, then the preview, as one chain."""
            listener(readable(detections_changed), [detections, upload, example], detection, api_visibility="private") \
                .success(readable(workbench.preview), image_inputs, preview, api_visibility="private")

        redraw(upload.upload(lambda: None, None, example, api_visibility="private").then)
        redraw(example.input(lambda: None, None, upload, api_visibility="private").then)
        redraw(upload.clear)
        redraw(detections.change)
        for trigger in (box_mode.input, box_text.submit, detection.input):
            trigger(readable(workbench.preview), image_inputs, preview, api_visibility="private")

        panels = [status, skeleton, table, grid, merged, weight_maps, gradcam, downloads, result_state]

        def shown(outputs, result):
            return (outputs.status, outputs.skeleton, outputs.table, outputs.heatmap_grid, outputs.merged,
                    outputs.weight_maps, outputs.gradcam, outputs.files, result)

        def inspect(image_file, example_name, model_name, weights_name, checkpoint_file, box_source, typed_box,
                    detected_box, drawn, flip_test, weighting, cam_joint, cam_layer):
            outputs, result = workbench.inspect(image_file, example_name, model_name, weights_name, checkpoint_file,
                                                box_source, typed_box, detected_box, drawn, flip_test, weighting,
                                                cam_joint, cam_layer)
            return *shown(outputs, result), gr.Dropdown(choices=person_choices(result), value=result.chosen)

        def choose(result, index, weighting, cam_joint, cam_layer):
            return shown(*workbench.person(result, index, weighting, cam_joint, cam_layer))

        def result_menus(result, location_value, layer_value):
            locs, loc, cam_layers, cam_layer = workbench.result_menus(result, location_value, layer_value)
            return gr.Dropdown(choices=locs, value=loc), gr.Dropdown(choices=cam_layers, value=cam_layer)

        run.click(readable(inspect),
                  [upload, example, model, weight, checkpoint, box_mode, box_text, detection, preview, flip, location,
                   joint, layer], panels + [person], api_name="inspect") \
            .success(readable(result_menus), [result_state, location, layer], [location, layer],
                     api_visibility="private") \
            .success(readable(workbench.people_preview), result_state, preview, api_visibility="private")
        person.input(readable(choose), [result_state, person, location, joint, layer], panels, api_name="person")
        location.input(readable(workbench.weight_maps), [result_state, location], weight_maps, api_visibility="private")
        for trigger in (joint.input, layer.input):
            trigger(readable(workbench.gradcam), [result_state, joint, layer], gradcam, api_visibility="private")

        def run_compare(result, models, weighting, flip_test):
            outputs = workbench.compare(result, models, weighting, flip_test)
            return outputs.table, outputs.skeletons, outputs.heatmaps, outputs.weight_maps

        compare_run.click(readable(run_compare), [result_state, compare_models, compare_location, flip],
                          [latency, skeletons, heatmaps, compare_weights], api_name="compare")

        def run_video(video, model_name, weights_name, flip_test, progress=gr.Progress(track_tqdm=True)):
            return workbench.video(video, model_name, weights_name, flip_test)

        video_run.click(readable(run_video), [video_in, model, weight, flip], [video_out, video_json, video_status],
                        api_name="video", concurrency_limit=1)
    return app
