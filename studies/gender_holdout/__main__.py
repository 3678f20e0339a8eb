"""``python -m studies.gender_holdout``: run the study."""
from .study import main

raise SystemExit(main())
