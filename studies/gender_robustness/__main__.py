"""``python -m studies.gender_robustness``: run the study."""
from .study import main

raise SystemExit(main())
