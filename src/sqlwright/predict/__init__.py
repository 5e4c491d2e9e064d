"""``sqlwright predict``: generate SQL for a dataset's questions with any backend, resumably,
and guide it by execution through the judge: select among samples (voting, first valid,
voting among the valid) and let the model correct itself from what its SQL did
(``sqlwright.predict.guided``)."""

from sqlwright.predict.run import PredictConfig, predict

__all__ = ["PredictConfig", "predict"]
