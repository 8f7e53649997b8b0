"""Training of the pose networks with the paper's recipe: configs (config), the heatmap loss (loss), the schedule
(schedule), data loading (data), checkpoints (checkpointing), processes (distributed), logs and curves (logs), the
trainer itself (loop) and publishing a finished run into the weights (publishing). May import `model`, `common`,
`codec`, `data`, `zoo`, `inference` and `evaluation`."""
from workbench.training.config import build_config, config_names, load_config
from workbench.training.logs import plot_training, read_log
from workbench.training.loop import TrainingResult, train

__all__ = ["TrainingResult", "build_config", "config_names", "load_config", "plot_training", "read_log", "train"]
