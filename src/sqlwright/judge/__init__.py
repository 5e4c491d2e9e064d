"""Execute-and-compare: the one definition of correct (see ``sqlwright.judge.service``)."""

from sqlwright.judge.compare import COMPARATORS, Comparator, NotComputed, get_comparator
from sqlwright.judge.service import (
           VERDICTS,
           Item,
           Judge,
           Judgement,
           Validity,
           Verdict,
           check_comparator,
           compare,
           verdict_of,
)

__all__ = ["COMPARATORS", "VERDICTS", "Comparator", "Item", "Judge", "Judgement", "NotComputed", "Validity", "Verdict",
           "check_comparator", "compare", "get_comparator", "verdict_of"]
