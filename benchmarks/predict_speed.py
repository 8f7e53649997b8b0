"""How much the predict loop adds to its two networks, on the street video (issue 15's speed and memory targets).

Per frame at 256x192 with lite_csw_hrnet, in interleaved rounds: the whole loop of `python -m workbench predict`
(decode the frame, detect, crop, pose network, decode heatmaps, draw, encode into an mp4) against the bare person
detector plus the bare pose network on the same frames and crops. Prints frames per second with the flip test off
and on, the overhead ratio (target <= 1.3), the pose network's time per crop on each engine (the fastest is
predict's default), and the peak resident memory of a whole predict run on the video and on the video repeated 20
times (a stream: it should not grow with the length).

    .venv/bin/python benchmarks/predict_speed.py [--rounds 5] [--threads 2] [--detector PATH]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from workbench.common.paths import data_root, models_root
from workbench.data.transforms import to_tensor
from workbench.inference import crop_people, predict_heatmaps
from workbench.prediction.api import Predictor, PredictOptions
from workbench.prediction.outputs import predict_video
from workbench.prediction.video import VideoWriter, read_frames, video_info
from workbench.speed.latency import interleaved_seconds, paired_ratio

MEMORY_SCRIPT = """
import sys
from pathlib import Path
from workbench.prediction.api import Predictor, PredictOptions
from workbench.prediction.outputs import predict_video
predictor = Predictor.load(detector=sys.argv[2], options=PredictOptions(flip=False), threads=int(sys.argv[4]))
predict_video(predictor, Path(sys.argv[1]), Path(sys.argv[3]), progress=False)
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""
"""Predicts one video in a fresh process and prints its peak resident memory in KiB (VmHWM: unlike getrusage's
ru_maxrss, it starts anew at exec, so the parent's memory does not count)."""


def repeated_video(source: Path, times: int, target: Path) -> Path:
    """`source` played `times` times over, written as one mp4 (streamed)."""
    info = video_info(source)
    with VideoWriter(target, info.fps, (info.width, info.height)) as writer:
        for _ in range(times):
            for frame in read_frames(source):
                writer.write(frame)
    return target


def peak_rss_mb(video: Path, detector: Path, output: Path, threads: int) -> float:
    """Peak resident memory (MiB) of a fresh process that predicts `video` into `output`."""
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(video), str(detector), str(output), str(threads)],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1]) / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--detector", type=Path, default=models_root() / "yolox_nano_coco.onnx")
    parser.add_argument("--video", type=Path, default=data_root() / "video" / "street.mp4")
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = list(read_frames(args.video))
    scratch = Path(tempfile.mkdtemp())
    print(f"{args.video.name}: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, "
          f"{args.threads} threads, {args.rounds} interleaved rounds")

    if not args.memory_only:
        measure_speed(args, frames)
    long_video = repeated_video(args.video, 20, scratch / "street_x20.mp4")
    short = peak_rss_mb(args.video, args.detector, scratch / "memory_short", args.threads)
    long = peak_rss_mb(long_video, args.detector, scratch / "memory_long", args.threads)
    print(f"peak resident memory: {short:.0f} MiB for {len(frames)} frames, {long:.0f} MiB for {20 * len(frames)} "
          f"frames ({long / short:.2f}x)")


def measure_speed(args: argparse.Namespace, frames: list) -> None:
    """The engines' time per crop, then the loop against its two networks, flip off and on."""
    scratch = Path(tempfile.mkdtemp())
    predictors = {engine: Predictor.load(detector=args.detector, options=PredictOptions(flip=False),
                                         threads=args.threads, engine=engine) for engine in ("onnx", "torch")}
    boxes = [predictors["onnx"].boxes(frame)[0] for frame in frames]
    crops = [torch.stack([to_tensor(c) for c in crop_people(frame, b, (256, 192))[0]])
             for frame, b in zip(frames, boxes)]
    people = sum(len(b) for b in boxes)
    engines = interleaved_seconds({engine: (lambda p=p: [p.network(c) for c in crops])
                                   for engine, p in predictors.items()}, repeats=args.rounds, warmup=1)
    for engine, seconds in engines.items():
        print(f"pose network on {engine}: {1e3 * statistics.median(seconds) / people:.1f} ms per crop (median)")
    print(f"torch / onnx time: {paired_ratio(engines['torch'], engines['onnx']):.2f}")

    for flip in (False, True):
        predictor = Predictor.load(detector=args.detector, options=PredictOptions(flip=flip), threads=args.threads)
        output = scratch / f"flip_{flip}"
        calls = {
            "loop": lambda: predict_video(predictor, args.video, output, progress=False),
            "detector": lambda: [predictor.detector.detect(frame) for frame in frames],
            "pose": lambda: [predict_heatmaps(predictor.network, c, flip) for c in crops],
        }
        seconds = interleaved_seconds(calls, repeats=args.rounds, warmup=1)
        bare = [d + p for d, p in zip(seconds["detector"], seconds["pose"])]
        loop = statistics.median(seconds["loop"]) / len(frames)
        print(f"flip {'on ' if flip else 'off'}: {1.0 / loop:.2f} frames/s ({1e3 * loop:.0f} ms/frame; detector "
              f"{1e3 * statistics.median(seconds['detector']) / len(frames):.0f}, pose "
              f"{1e3 * statistics.median(seconds['pose']) / len(frames):.0f} ms/frame); loop / (detector + pose) = "
              f"{paired_ratio(seconds['loop'], bare):.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
