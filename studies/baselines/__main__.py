"""``python -m studies.baselines``: run the study."""
from .study import main

raise SystemExit(main())
