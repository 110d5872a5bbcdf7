"""``python -m saliency_core``: see ``saliency_core.cli``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
