"""``python -m studies.recipe_cv``: run the study."""
from .study import main

raise SystemExit(main())
