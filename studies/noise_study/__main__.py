"""``python -m studies.noise_study``: run the study."""
from .study import main

raise SystemExit(main())
