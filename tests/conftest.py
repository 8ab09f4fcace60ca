"""Tests live in folders by what they test (ops, library, lab, scale); the shared helpers
(``helpers``) and the float64 disc-step reference (``reference``) import from any of them."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE / "ops"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
