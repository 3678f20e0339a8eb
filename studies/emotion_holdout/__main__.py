"""``python -m studies.emotion_holdout``: run the study."""
from .study import main

raise SystemExit(main())
