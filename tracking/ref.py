"""Where a run was logged: stored in ``result.json`` (``TrainingResult.tracking``), so the model
registry finds the MLflow run of a run directory, and handed to a study's trials so that their
runs nest under the study's parent run."""

from __future__ import annotations

import urllib.parse

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TrackedRun"]


class TrackedRun(BaseModel):
    """One MLflow run: the store, the experiment and the run id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str = Field(description="Tracking URI of the store (a database password is hidden "
                     "once written to a file).")
    experiment_id: str
    run_id: str

    def without_password(self) -> TrackedRun:
        """The reference as it may be written to a file or shown."""
        parts = urllib.parse.urlsplit(self.uri)
        if parts.password is None:
            return self
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return self.model_copy(update={"uri": urllib.parse.urlunsplit(
            parts._replace(netloc=netloc))})
