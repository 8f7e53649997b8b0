"""Writers of the report files (complexity, evaluation, paired comparison): tables, CSV and plots, written
atomically. May import every room below the faces (speed, evaluation, training, zoo, common)."""
