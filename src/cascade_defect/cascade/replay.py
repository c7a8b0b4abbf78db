"""A layer that answers with outputs recorded elsewhere: an earlier Ray stage, an evaluation pass.

The router calls it like the real layer; each image gets what was recorded for it (keyed by the image
object), and a recorded failure is raised again, so the router's batch isolation gives that frame the
same trace entry and routing as the original call did. `RecordedHold` does the same for the drift
watch: the router holds exactly the frames an earlier stage's watch held.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence


class RecordedLayer:
    """Layer 1 or Layer 2 replayed from `outputs` (id of the image object -> result or exception).

    `serves` says which domains a replayed Layer 2 serves (as the real one did); None: every domain.
    """

    def __init__(self, outputs: Mapping[int, Any], serves: Callable[[str], bool] | None = None):
        self.outputs = dict(outputs)
        self._serves = serves

    def _answer(self, images: Sequence[Any]) -> list[Any]:
        out = [self.outputs[id(img)] for img in images]
        for r in out:
            if isinstance(r, BaseException):
                raise r
        return out

    def score_batch(self, images, domain):
        return self._answer(images)

    def detect_batch(self, images, domain):
        return [list(r) for r in self._answer(images)]

    def serves(self, domain: str) -> bool:
        return True if self._serves is None else bool(self._serves(domain))


class RecordedHold:
    """A drift watch replayed: `hold` answers what the watch of an earlier stage said about the frames
    now being routed (`reason`; None: not held). It observes nothing itself."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._held: dict[str, str] = {}

    def observe(self, domain: str, z: float | None) -> None:
        pass

    def hold(self, domain: str) -> str | None:
        if self.reason:
            self._held[domain] = self.reason
        return self.reason

    def held(self) -> dict[str, str]:
        """Every domain the replayed watch held so far, with the reason."""
        return dict(self._held)
