"""The structured reading of one chat message: today's ``Understanding`` plus what chat needs next.

These subclasses carry the additions proposed for ``graph/chat_state.py`` (issue 13); once the
restructure lands they fold into ``Constraints`` and ``Understanding`` and ``Reading`` becomes the
one schema both understand paths fill (the offline parser, and LMMem's single structured call).

References to what the conversation showed, wherever a title may stand: ``"that"`` is the top
pick shown last, ``"#2"`` the second pick shown last, ``"these"`` every pick shown last.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.chat_state import Constraints, Understanding

RelativeEra = Literal["older", "newer"]


class ReadingConstraints(Constraints):
    """Constraints with year bounds and an era relative to what was shown."""

    year_min: int | None = Field(default=None, description="earliest year wanted ('since 1995')")
    year_max: int | None = Field(default=None, description="latest year wanted ('before 1980')")
    relative_era: RelativeEra | None = Field(
        default=None, description="'older' / 'newer' than the picks shown last (or the catalogue)"
    )

    def is_empty(self) -> bool:
        """Whether nothing is constrained."""
        bounded = self.year_min is not None or self.year_max is not None
        return super().is_empty() and not bounded and self.relative_era is None

    def base(self) -> Constraints:
        """The fields today's chat graph reads."""
        return Constraints(include=self.include, exclude=self.exclude, decades=self.decades)


class Reading(Understanding):
    """What one user message means, including counts, skips and "something else"."""

    constraints: ReadingConstraints = Field(default_factory=ReadingConstraints)
    count: int | None = Field(default=None, ge=1, le=50, description="how many picks were asked")
    exclude_shown: bool = Field(
        default=False,
        description="'something else / more': leave out every item shown in this conversation",
    )
    skip: list[str] = Field(
        default_factory=list,
        description="titles or references to leave out of this conversation only ('not that "
        "one'); never recorded as feedback",
    )
    similar_to: list[str] = Field(
        default_factory=list,
        description="titles or references to find items like ('something like X'); not feedback",
    )

    def understanding(self) -> Understanding:
        """The reading in today's type (the additions dropped) for the current chat graph."""
        return Understanding(
            intent=self.intent,
            request=self.request,
            constraints=self.constraints.base(),
            feedback=list(self.feedback),
        )
