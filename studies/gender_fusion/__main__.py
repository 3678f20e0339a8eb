"""``python -m studies.gender_fusion``: run the study."""
from .study import main

raise SystemExit(main())
