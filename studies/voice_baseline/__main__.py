"""``python -m studies.voice_baseline``: run the study."""
from .study import main

raise SystemExit(main())
