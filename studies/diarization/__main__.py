"""``python -m studies.diarization``: run the study."""
from .study import main

raise SystemExit(main())
