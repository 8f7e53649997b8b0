"""The Gradio workbench app: `build_app(Workbench(...))`, launched by `python -m workbench app`. A face: it may
import every room, and nothing but the commands imports it.

layout.py holds the page, callbacks.py the event handlers, analysis.py what Inspect and Compare compute,
complexity_panel.py the Complexity tab, inputs.py images and boxes, models.py the model and weights menus.
"""
