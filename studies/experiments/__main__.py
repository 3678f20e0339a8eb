"""``python -m studies.experiments``: run the study."""
from .study import main

raise SystemExit(main())
