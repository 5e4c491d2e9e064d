"""``sqlwright predict``: generate SQL for a dataset's questions with any backend, resumably,
and select among samples with the judge (self-consistency voting)."""

from sqlwright.predict.run import PredictConfig, predict

__all__ = ["PredictConfig", "predict"]
