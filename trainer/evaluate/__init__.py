"""Evaluation: FID/KID (offline TF-Inception), tag accuracy, diversity, StarGAN metrics,
reports and run comparisons. See docs/evaluation.md.

matplotlib and the Inception weights load on first use only, so importing
``evaluate_during_training`` from the training loop is cheap.
"""

from trainer.evaluate.compare import compare_runs
from trainer.evaluate.fid import fid_kid
from trainer.evaluate.pipeline import EvalOptions, evaluate_during_training, evaluate_run

__all__ = ["EvalOptions", "compare_runs", "evaluate_during_training", "evaluate_run", "fid_kid"]
