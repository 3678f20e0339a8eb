"""``python -m studies.corpus_pitch``: run the study."""
from .study import main

raise SystemExit(main())
