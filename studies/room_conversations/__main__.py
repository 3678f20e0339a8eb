"""``python -m studies.room_conversations``: run the study."""
from .study import main

raise SystemExit(main())
