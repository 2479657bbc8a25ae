"""Loss curves: logged to DVCLive while training runs, kept in checkpoints, rewritten in full at the end.

DVC deletes a stage's outputs before it re-runs it, so a run resumed from a checkpoint
would only log the steps after the checkpoint. The history therefore travels in the
checkpoint, and :meth:`LossCurves.finish` rewrites the DVCLive folder from all of it:
a resumed run leaves the same curves, byte for byte, as an uninterrupted one.
"""

from __future__ import annotations

import os

from dvclive import Live


class LossCurves:
    """Losses by step, under a name prefix (``gan/loss_d``), mirrored to a DVCLive folder."""

    def __init__(self, live_dir: str | os.PathLike, prefix: str, history: list[tuple[int, dict[str, float]]] = ()):
        self.live_dir = str(live_dir)
        self.prefix = prefix
        self.history = list(history)
        self._live = Live(self.live_dir, resume=bool(self.history), save_dvc_exp=False, dvcyaml=None)

    def log(self, step: int, losses: dict[str, float]) -> None:
        """Record the losses at `step` and show them in DVCLive now."""
        self.history.append((step, dict(losses)))
        self._write(self._live, step, losses)

    def last(self) -> dict[str, float]:
        """Return the most recent losses (empty before any were logged)."""
        return dict(self.history[-1][1]) if self.history else {}

    def finish(self) -> None:
        """Rewrite the DVCLive folder from the whole history."""
        self._live.end()
        with Live(self.live_dir, resume=False, save_dvc_exp=False, dvcyaml=None) as live:
            for step, losses in self.history:
                self._write(live, step, losses)

    def _write(self, live: Live, step: int, losses: dict[str, float]) -> None:
        live.step = step
        for name, value in sorted(losses.items()):
            live.log_metric(f"{self.prefix}/{name}", value)
        live.next_step()
