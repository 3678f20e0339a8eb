"""``python -m studies.ge2e_gender``: run the study."""
from .study import main

raise SystemExit(main())
