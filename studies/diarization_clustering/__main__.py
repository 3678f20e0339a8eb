"""``python -m studies.diarization_clustering``: run the study."""
from .study import main

raise SystemExit(main())
