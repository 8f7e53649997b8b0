"""Pose prediction on the photos and videos people bring: every detected person through the top-down pipeline
(people), person ids across video frames (tracking), drawn pictures (render), streamed video (video), and `predict`
(api), the public entry point of the CLI, the app and Python. May import every room below evaluation."""
